// The Kubernetes stream protocols over WebSocket: exec and attach as v5/v4.channel.k8s.io
// (every binary message starts with its channel byte; v5 adds 255 <channel> to close one), and
// port-forward as SPDY/3.1+portforward.k8s.io (the SPDY byte stream tunnelled in binary
// messages, so the SPDY port-forward serves it through a socket pair).

#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"
#include "cri/streaming/server.h"
#include "cri/streaming/transport.h"
#include "cri/streaming/websocket.h"

namespace berth::cri::streaming {
namespace {

// A message of the channel protocol: its channel byte, then the data.
std::string ChannelMessage(size_t channel, std::string_view data) {
  std::string message(1, static_cast<char>(channel));
  message.append(data);
  return message;
}

class WebSocketTransport final : public Transport {
 public:
  WebSocketTransport(std::unique_ptr<WebSocket> ws, bool v5, Inbound* in)
      : ws_(std::move(ws)), v5_(v5), in_(in) {
    ws_->Start([this](std::string_view m) { DeliverChannelMessage(m, v5_, *in_); },
               [this] { in_->Gone(); });
  }

  // The channels exist as soon as the connection does.
  void AwaitReady(const Request&) override {}

  bool Send(Channel channel, std::string_view data) override {
    return ws_->Send(ChannelMessage(static_cast<size_t>(channel), data));
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
  if (protocol == "v4.channel.k8s.io") {
    ServeChannelPortForward(*std::move(ws), request, head.target);
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

// The older WebSocket port-forward (v4.channel.k8s.io): the ports come as ?port= parameters
// (or from the request); port i has data channel 2i and error channel 2i+1, each opened by a
// message holding the port as two little-endian bytes; one connection per port.
void Server::ServeChannelPortForward(std::unique_ptr<WebSocket> ws, const Request& request,
                                     const std::string& target) {
  std::vector<int> ports;
  const size_t query = target.find('?');
  if (query != std::string::npos) {
    for (absl::string_view kv : absl::StrSplit(target.substr(query + 1), '&')) {
      int port = 0;
      if (absl::ConsumePrefix(&kv, "port=") && absl::SimpleAtoi(kv, &port) && port > 0 &&
          port < 65536) {
        ports.push_back(port);
      }
    }
  }
  if (ports.empty()) ports.assign(request.ports.begin(), request.ports.end());
  absl::StatusOr<pod::SandboxPtr> sandbox = sandboxes_->Get(request.id);
  const std::string netns = sandbox.ok() ? (*sandbox)->netns_path : "";
  std::vector<int> sockets(ports.size(), -1);
  for (size_t i = 0; i < ports.size(); ++i) {
    const std::string port_bytes = {static_cast<char>(ports[i] & 0xff),
                                    static_cast<char>((ports[i] >> 8) & 0xff)};
    ws->Send(ChannelMessage(2 * i, port_bytes));
    ws->Send(ChannelMessage(2 * i + 1, port_bytes));
    absl::StatusOr<int> conn = sandbox.ok() ? ConnectInNetns(netns, ports[i])
                                            : absl::StatusOr<int>(sandbox.status());
    if (conn.ok()) {
      sockets[i] = *conn;
    } else {
      ws->Send(ChannelMessage(2 * i + 1, absl::StrCat("error forwarding port ", ports[i], ": ",
                                                      conn.status().message())));
    }
  }
  absl::Mutex mu;
  bool closed = false;
  ws->Start(
      [&sockets](std::string_view m) {
        if (m.empty()) return;
        const size_t channel = static_cast<unsigned char>(m[0]);
        m.remove_prefix(1);
        if (channel % 2 != 0 || channel / 2 >= sockets.size() || sockets[channel / 2] < 0) return;
        while (!m.empty()) {
          const ssize_t n = ::send(sockets[channel / 2], m.data(), m.size(), MSG_NOSIGNAL);
          if (n <= 0) return;
          m.remove_prefix(static_cast<size_t>(n));
        }
      },
      [&] {
        absl::MutexLock lock(&mu);
        closed = true;
        for (int s : sockets) {
          if (s >= 0) ::shutdown(s, SHUT_RDWR);
        }
      });
  std::vector<std::thread> pumps;
  for (size_t i = 0; i < sockets.size(); ++i) {
    if (sockets[i] < 0) continue;
    pumps.emplace_back([&ws, &sockets, i] {
      char buf[32 << 10];
      for (;;) {
        const ssize_t n = ::read(sockets[i], buf, sizeof buf);
        if (n <= 0) break;
        std::string message(1, static_cast<char>(2 * i));
        message.append(buf, static_cast<size_t>(n));
        if (!ws->Send(std::move(message))) break;
      }
    });
  }
  for (std::thread& t : pumps) t.join();
  ws->Close();
  for (int s : sockets) {
    if (s >= 0) ::close(s);
  }
}

}  // namespace berth::cri::streaming
