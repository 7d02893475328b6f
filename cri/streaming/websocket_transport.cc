// The Kubernetes stream protocols over WebSocket: exec and attach as v5/v4.channel.k8s.io
// (every binary message starts with its channel byte; v5 adds 255 <channel> to close one), and
// port-forward as SPDY/3.1+portforward.k8s.io (the SPDY byte stream tunnelled in binary
// messages, so the SPDY port-forward serves it through a socket pair).

#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "cri/streaming/server.h"
#include "cri/streaming/transport.h"
#include "cri/streaming/websocket.h"

namespace berth::cri::streaming {
namespace {

constexpr unsigned char kCloseChannel = 255;

class WebSocketTransport final : public Transport {
 public:
  WebSocketTransport(std::unique_ptr<WebSocket> ws, bool v5, Inbound* in)
      : ws_(std::move(ws)), v5_(v5), in_(in) {
    ws_->Start(
        [this](std::string_view m) {
          if (m.empty()) return;
          const auto channel = static_cast<unsigned char>(m[0]);
          m.remove_prefix(1);
          if (channel == kCloseChannel && v5_) {
            if (!m.empty() && m[0] == static_cast<char>(Channel::kStdin)) in_->StdinClosed();
          } else if (channel == static_cast<unsigned char>(Channel::kStdin)) {
            in_->Stdin(m);
          } else if (channel == static_cast<unsigned char>(Channel::kResize)) {
            in_->ResizeJson(m);
          }
        },
        [this] { in_->Gone(); });
  }

  // The channels exist as soon as the connection does.
  void AwaitReady(const Request&) override {}

  bool Send(Channel channel, std::string_view data) override {
    std::string message(1, static_cast<char>(channel));
    message.append(data);
    return ws_->Send(std::move(message));
  }

  void Finish(int exit_code, const std::string& error) override {
    (void)Send(Channel::kError, StatusJson(exit_code, error));
    ws_->Close();
  }

 private:
  std::unique_ptr<WebSocket> ws_;
  bool v5_;
  Inbound* in_;
};

}  // namespace

void Server::ServeWebSocket(int fd, const Request& request, const WebSocket::HttpHead& head,
                            const std::string& protocol) {
  const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(config_.idle_timeout);
  absl::StatusOr<std::unique_ptr<WebSocket>> ws = WebSocket::Accept(fd, head, protocol, idle);
  if (!ws.ok()) {
    spdlog::warn("streaming: {}", ws.status().message());
    return;  // the socket went with the failed stream
  }
  if (request.kind != Request::Kind::kPortForward) {
    Inbound in;
    WebSocketTransport t(*std::move(ws), protocol == "v5.channel.k8s.io", &in);
    RunRemoteCommand(request, t, in);
    return;
  }
  // SPDY tunnelled in WebSocket messages: a socket pair between the two.
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    (*ws)->Close();
    return;
  }
  const int ours = pair[0];
  std::unique_ptr<WebSocket> socket = *std::move(ws);
  socket->Start(
      [ours](std::string_view m) {
        while (!m.empty()) {
          const ssize_t n = ::send(ours, m.data(), m.size(), MSG_NOSIGNAL);
          if (n <= 0) return;
          m.remove_prefix(static_cast<size_t>(n));
        }
      },
      [ours] { ::shutdown(ours, SHUT_RDWR); });
  std::thread spdy([this, fd = pair[1], &request] { ServePortForward(fd, request); });
  char buf[32 << 10];
  for (;;) {
    const ssize_t n = ::read(ours, buf, sizeof buf);
    if (n <= 0) break;
    if (!socket->Send(std::string(buf, static_cast<size_t>(n)))) break;
  }
  ::shutdown(ours, SHUT_RDWR);
  spdy.join();
  socket->Close();
  ::close(ours);
}

}  // namespace berth::cri::streaming
