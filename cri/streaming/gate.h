#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::cri::streaming {

class TlsTerminator;

// An HTTP request head as the streaming server reads it.
struct HttpRequest {
  std::string method, path;
  std::multimap<std::string, std::string> headers;  // lower-case names
  // Every comma-separated value of the header, trimmed, in order.
  std::vector<std::string> Values(const std::string& name) const;
};

// Parses a head up to and including its blank line. False if the request line is malformed.
bool ParseHead(const std::string& head, HttpRequest* out);

// A connection whose request head has arrived, not yet given a session. Either Refuse() it or
// Take() its socket; dropping it closes the connection.
class Incoming {
 public:
  virtual ~Incoming() = default;
  virtual const HttpRequest& request() const = 0;
  // Sends a short plain-text answer (best effort, never blocks) and closes.
  virtual void Refuse(int code, const char* reason, const std::string& body) = 0;
  // The connection as a blocking plain socket for a session thread (for TLS, the plain end of a
  // pair a relay thread decrypts into). Internal error if no relay can be had.
  virtual absl::StatusOr<int> Take() = 0;
};

// The streaming server's front door: one thread accepts, completes TLS handshakes and reads the
// request heads of every connection at once with non-blocking sockets, so a client that has
// not yet shown a token costs no thread. A head must arrive whole within `head_deadline`; at most
// `max_pending` connections wait for theirs (more are closed at once). Each complete head goes to
// `on_request` on the gate thread, which must not block.
class Gate {
 public:
  struct Options {
    std::chrono::milliseconds head_deadline{10'000};
    size_t max_head = 16 << 10;
    size_t max_pending = 256;
  };
  // Takes `listen_fd` (which it closes) and starts the thread. `tls` may be null.
  Gate(int listen_fd, TlsTerminator* tls, Options options,
       std::function<void(std::unique_ptr<Incoming>)> on_request);
  // Stops the thread and closes every connection still waiting.
  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

 private:
  struct Pending;
  void Run();
  void AcceptAll();
  // Advances one connection; false once it is finished (handed over or dropped).
  bool Step(Pending& p);
  void Watch(Pending& p, bool want_write);

  int listen_fd_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  TlsTerminator* const tls_;
  const Options options_;
  std::function<void(std::unique_ptr<Incoming>)> on_request_;
  std::map<int, std::unique_ptr<Pending>> pending_;  // gate thread only
  std::thread thread_;
};

}  // namespace berth::cri::streaming
