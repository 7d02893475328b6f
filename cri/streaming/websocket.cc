#include "cri/streaming/websocket.h"

#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"

namespace berth::cri::streaming {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {
constexpr size_t kMaxQueued = 64;
// The largest message a client may send (fragments included), larger ones end the connection
// with close code 1009. Clients send stdin and port-forward data in chunks of 32 KiB; this bounds
// what one connection can make us hold.
constexpr size_t kMaxMessage = 1 << 20;
}  // namespace

struct WebSocket::Impl {
  net::io_context io;
  beast::websocket::stream<tcp::socket> ws{io};
  std::chrono::milliseconds idle{0};
  net::steady_timer timer{io};
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  beast::flat_buffer read_buffer;
  std::function<void(std::string_view)> on_message;
  std::function<void()> on_closed;
  std::thread thread;

  std::mutex mu;  // guards the queue and the flags, for Send() from other threads
  std::condition_variable cv;
  std::deque<std::string> queue;
  bool writing = false;
  bool closed = false;
  bool closing = false;
  bool stopped = false;  // the I/O thread has run out of work

  void Touch() { last_activity = std::chrono::steady_clock::now(); }

  void Read() {
    ws.async_read(read_buffer, [this](beast::error_code ec, size_t) {
      if (ec) {
        Finish();
        return;
      }
      Touch();
      const auto data = read_buffer.data();
      on_message(std::string_view(static_cast<const char*>(data.data()), data.size()));
      read_buffer.consume(read_buffer.size());
      Read();
    });
  }

  void CheckIdle() {
    if (idle.count() <= 0) return;
    timer.expires_after(std::chrono::seconds(1));
    timer.async_wait([this](beast::error_code ec) {
      if (ec) return;
      if (std::chrono::steady_clock::now() - last_activity > idle) {
        beast::error_code ignored;
        ws.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
        return;
      }
      CheckIdle();
    });
  }

  // On the I/O thread: writes the next queued message, or the close once all is out.
  void WriteNext() {
    std::unique_lock<std::mutex> lock(mu);
    if (writing || closed) return;
    if (queue.empty()) {
      if (closing) {
        writing = true;
        lock.unlock();
        ws.async_close(beast::websocket::close_code::normal, [this](beast::error_code) {
          // The peer's close answer ends the read loop; if it never comes, stop here.
          beast::error_code ignored;
          ws.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
        });
      }
      return;
    }
    writing = true;
    auto message = std::make_shared<std::string>(std::move(queue.front()));
    queue.pop_front();
    cv.notify_all();
    lock.unlock();
    ws.binary(true);
    ws.async_write(net::buffer(*message), [this, message](beast::error_code ec, size_t) {
      Touch();
      {
        std::lock_guard<std::mutex> guard(mu);
        writing = false;
        if (ec) closed = true;
      }
      cv.notify_all();
      if (!ec) WriteNext();
    });
  }

  void Finish() {
    {
      std::lock_guard<std::mutex> guard(mu);
      if (closed && !on_closed) return;
      closed = true;
    }
    cv.notify_all();
    timer.cancel();
    if (on_closed) {
      auto fn = std::move(on_closed);
      on_closed = nullptr;
      fn();
    }
  }
};

WebSocket::WebSocket(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<WebSocket>> WebSocket::Accept(int fd, const HttpHead& head,
                                                             const std::string& protocol,
                                                             std::chrono::milliseconds idle) {
  auto impl = std::make_unique<Impl>();
  impl->idle = idle;
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  beast::error_code ec;
  impl->ws.next_layer().assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) return absl::InternalError(absl::StrCat("websocket: ", ec.message()));
  http::request<http::empty_body> request;
  request.method_string(head.method);
  request.target(head.target);
  request.version(11);
  for (const auto& [k, v] : head.headers) request.insert(k, v);
  if (!beast::websocket::is_upgrade(request)) {
    return absl::InvalidArgumentError("not a WebSocket upgrade");
  }
  impl->ws.set_option(beast::websocket::stream_base::decorator(
      [protocol](beast::websocket::response_type& response) {
        response.set(http::field::sec_websocket_protocol, protocol);
      }));
  impl->ws.read_message_max(kMaxMessage);
  impl->ws.accept(request, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("websocket handshake: ", ec.message()));
  return std::unique_ptr<WebSocket>(new WebSocket(std::move(impl)));
}

WebSocket::~WebSocket() { Close(); }

void WebSocket::Start(std::function<void(std::string_view)> on_message,
                      std::function<void()> on_closed) {
  impl_->on_message = std::move(on_message);
  impl_->on_closed = std::move(on_closed);
  net::post(impl_->io, [this] {
    impl_->Read();
    impl_->CheckIdle();
  });
  impl_->thread = std::thread([this] {
    impl_->io.run();
    {
      std::lock_guard<std::mutex> guard(impl_->mu);
      impl_->stopped = true;
    }
    impl_->cv.notify_all();
  });
}

bool WebSocket::Send(std::string message) {
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    impl_->cv.wait(lock, [&] { return impl_->closed || impl_->queue.size() < kMaxQueued; });
    if (impl_->closed || impl_->closing) return false;
    impl_->queue.push_back(std::move(message));
  }
  net::post(impl_->io, [this] { impl_->WriteNext(); });
  return true;
}

void WebSocket::Close() {
  if (!impl_ || !impl_->thread.joinable()) return;
  {
    std::lock_guard<std::mutex> guard(impl_->mu);
    impl_->closing = true;
  }
  net::post(impl_->io, [this] { impl_->WriteNext(); });
  {
    // A peer that never answers the close: give up after a while.
    std::unique_lock<std::mutex> lock(impl_->mu);
    if (!impl_->cv.wait_for(lock, std::chrono::seconds(5), [this] { return impl_->stopped; })) {
      net::post(impl_->io, [this] {
        beast::error_code ignored;
        impl_->ws.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
        impl_->ws.next_layer().close(ignored);
      });
    }
  }
  impl_->thread.join();
}

}  // namespace berth::cri::streaming
