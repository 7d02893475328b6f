#pragma once

#include <chrono>
#include <cstdint>
#include <array>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/config.h"
#include "cri/streaming/gate.h"
#include "cri/streaming/websocket.h"
#include "pod/container_manager.h"
#include "pod/sandbox_manager.h"

namespace berth::cri::streaming {

// What an Exec, Attach or PortForward call asked for; kept under a one-time token.
struct Request {
  enum class Kind { kExec, kAttach, kPortForward };
  Kind kind = Kind::kExec;
  std::string id;  // container id (exec, attach) or sandbox id (port-forward)
  std::vector<std::string> cmd;
  bool tty = false, stdin = false, stdout = true, stderr = true;
  std::vector<int32_t> ports;
};

// The streaming server kubelet and crictl are sent to by Exec, Attach and PortForward: HTTP on
// streaming.address:port, one-time tokens valid for a minute, and the Kubernetes stream protocols
// over SPDY/3.1 (v4/v5.channel.k8s.io for exec and attach, portforward.k8s.io). Exec runs the
// OCI runtime's exec; attach goes through the monitor's attach socket and ctl fifo;
// port-forward connects to localhost:port inside the pod's network namespace.
// Thread-safe. One gate thread serves every connection until it shows a valid token (TLS handshake
// and request head included); then each session has a thread of its own, at most 256 at once.
class Server {
 public:
  Server(const config::StreamingConfig& config, pod::ContainerManager* containers,
         pod::SandboxManager* sandboxes, absl::Duration token_lifetime = absl::Minutes(1));
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds (port 0: any free port) and starts serving, with TLS when tls_cert and tls_key are
  // set. Unavailable naming the address; InvalidArgument for a certificate or key that does not
  // load.
  absl::Status Start();
  // Stops accepting and ends every session.
  void Stop();

  // Records the request under a new token: the URL to return to the client.
  std::string Register(Request request);
  const std::string& base_url() const { return base_url_; }

  // Sessions so far, by kind (index: Request::Kind): those running now, those started, and those
  // refused (no upgrade, a protocol berth does not speak, too many sessions, no thread). A token
  // that is unknown or expired has no kind: refused_unknown.
  struct SessionCounts {
    std::array<int64_t, 3> active{}, started{}, refused{};
    int64_t refused_unknown = 0;
  };
  SessionCounts sessions() const;

 private:
  struct Pending {
    Request request;
    absl::Time expires;
  };
  // On the gate's thread: checks the token and the protocol, then starts the session's thread.
  void Dispatch(std::unique_ptr<Incoming> in);
  bool TakeToken(const std::string& token, Request* out);
  void ServeRemoteCommand(int fd, const Request& request, const std::string& protocol);
  void RunRemoteCommand(const Request& request, class Transport& t, class Inbound& in);
  void ServeWebSocket(int fd, const Request& request, const WebSocket::HttpHead& head,
                      const std::string& protocol);
  void ServeChannelPortForward(std::unique_ptr<WebSocket> ws, const Request& request,
                               const std::string& target);
  void ServePortForward(int fd, const Request& request);

  const config::StreamingConfig config_;
  const absl::Duration token_lifetime_;
  std::unique_ptr<class TlsTerminator> tls_;
  pod::ContainerManager* const containers_;
  pod::SandboxManager* const sandboxes_;
  int listen_fd_ = -1;
  std::string base_url_;
  std::unique_ptr<Gate> gate_;

  mutable absl::Mutex mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::set<int> connections_ ABSL_GUARDED_BY(mu_);
  SessionCounts counts_ ABSL_GUARDED_BY(mu_);
  int64_t Active() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);  // sessions running, of every kind
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// A TCP connection to 127.0.0.1:port made from inside the network namespace at `netns` ("" =
// the host's). Returns the socket; an error naming the port otherwise.
absl::StatusOr<int> ConnectInNetns(const std::string& netns, int port);

// The metav1.Status JSON the v4 protocols put on the error stream.
std::string StatusJson(int exit_code, const std::string& error);

}  // namespace berth::cri::streaming
