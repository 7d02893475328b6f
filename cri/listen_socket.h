#pragma once

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "base/socket_activation.h"
#include "base/unique_fd.h"
#include "grpcpp/server.h"

namespace berth::cri {

// Claims the CRI socket path for this daemon: an exclusive flock on "<path>.lock" (held for the
// daemon's life, holding its pid) so that a second berthd on the same path is refused. A socket
// berthd makes itself (Claim) replaces a stale one left by a dead daemon and is removed on
// destruction. A socket the service manager made and passed (Adopt) is the service manager's: it
// stays, with the connections queued on it, for the next berthd. Move-only.
class ListenSocket {
 public:
  // FailedPrecondition ("... already serving ...") if another berthd holds the path, AlreadyExists if
  // another process answers on it, FailedPrecondition if the path is not a socket.
  static absl::StatusOr<ListenSocket> Claim(const std::string& path);
  // For a listening socket passed by systemd's socket activation. FailedPrecondition if another
  // berthd holds the path; InvalidArgument if `fd` is not a listening unix socket bound to `path`.
  static absl::StatusOr<ListenSocket> Adopt(const std::string& path, UniqueFd fd);
  // The socket for `path` among those systemd passed (TakeInheritedSockets): Claim when none
  // was, Adopt the one bound to `path` (closing the others, with a warning). InvalidArgument,
  // naming what was passed, when none is.
  static absl::StatusOr<ListenSocket> FromInherited(const std::string& path,
                                                    std::vector<InheritedSocket> inherited);

  ListenSocket(ListenSocket&&) = default;
  ListenSocket& operator=(ListenSocket&&) = default;
  ~ListenSocket();

  // Once the server listens: root-owned, mode 0660. An adopted socket keeps the owner and mode
  // its unit gave it (SocketUser, SocketGroup, SocketMode); one that others may use is warned of.
  absl::Status Secure() const;

  const std::string& path() const { return path_; }
  // The adopted socket's descriptor (-1 for one berthd makes): connections are accepted from it
  // by a SocketAcceptor rather than by gRPC's own listener.
  int adopted_fd() const { return adopted_.get(); }

 private:
  ListenSocket(std::string path, UniqueFd lock, UniqueFd adopted)
      : path_(std::move(path)), lock_(std::move(lock)), adopted_(std::move(adopted)) {}

  std::string path_;
  UniqueFd lock_;
  UniqueFd adopted_;
};

// Hands the connections of an adopted listening socket to a gRPC server, from a thread of its
// own. gRPC 1.51 cannot listen on a descriptor it did not open: each accepted connection is
// given to it with grpc::AddInsecureChannelFromFd. Should the socket fail, berthd shuts down
// (a SIGTERM to itself) for the service manager to restart it. Not thread-safe: Start and Stop
// from one thread.
class SocketAcceptor {
 public:
  SocketAcceptor() = default;
  ~SocketAcceptor();  // Stop()
  SocketAcceptor(const SocketAcceptor&) = delete;
  SocketAcceptor& operator=(const SocketAcceptor&) = delete;

  // Once `server` is started; `listen_fd` and `server` must outlive Stop().
  absl::Status Start(int listen_fd, grpc::Server* server);
  // Accepts no more: what is queued on the socket waits there for the next berthd. Before the
  // server shuts down. Idempotent.
  void Stop();
  // Whether it gave up on a failed socket (and sent berthd its SIGTERM).
  bool failed() const { return failed_.load(); }

 private:
  void Loop(int listen_fd, grpc::Server* server);

  UniqueFd wake_;  // an eventfd that Stop() signals
  std::thread thread_;
  std::atomic<bool> failed_{false};
};

}  // namespace berth::cri
