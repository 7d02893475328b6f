#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::cri::streaming {

// A server-side WebSocket connection (RFC 6455, Boost.Beast) taken over from an HTTP request
// we already read: the upgrade answer with the chosen subprotocol, binary messages both ways,
// ping/pong, close. An I/O thread does all socket work; Send() may be called from any thread
// and blocks while too much is queued. The connection ends after `idle` without traffic either
// way. Owns the socket.
class WebSocket {
 public:
  struct HttpHead {
    std::string method, target;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  // Completes the handshake. InvalidArgument if the request is not a WebSocket upgrade.
  static absl::StatusOr<std::unique_ptr<WebSocket>> Accept(int fd, const HttpHead& head,
                                                           const std::string& protocol,
                                                           std::chrono::milliseconds idle);
  ~WebSocket();

  // Reads messages on the I/O thread until the peer closes, an error, or Close().
  void Start(std::function<void(std::string_view message)> on_message,
             std::function<void()> on_closed);
  // Queues a binary message; false once the connection is closed.
  bool Send(std::string message);
  // Sends what is queued, then a normal close; waits for the I/O thread.
  void Close();

 private:
  struct Impl;
  explicit WebSocket(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::cri::streaming
