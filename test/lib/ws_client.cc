#include "test/lib/ws_client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace berth::testing {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct WsClient::Impl {
  net::io_context io;
  beast::websocket::stream<tcp::socket> ws{io};
  std::thread reader;
  absl::Mutex write_mu;
  absl::Mutex mu;
  std::map<unsigned char, std::string> data ABSL_GUARDED_BY(mu);
  bool closed ABSL_GUARDED_BY(mu) = false;
};

WsClient::WsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<WsClient>> WsClient::Connect(
    const std::string& url, const std::vector<std::string>& protocols) {
  if (!absl::StartsWith(url, "http://")) return absl::InvalidArgumentError("not http: " + url);
  const std::string rest = url.substr(7);
  const std::string host_port = rest.substr(0, rest.find('/'));
  const std::string path = rest.substr(rest.find('/'));
  const std::string host = host_port.substr(0, host_port.rfind(':'));
  const std::string port = host_port.substr(host_port.rfind(':') + 1);
  auto impl = std::make_unique<Impl>();
  beast::error_code ec;
  tcp::resolver resolver(impl->io);
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) return absl::UnavailableError(ec.message());
  net::connect(impl->ws.next_layer(), endpoints, ec);
  if (ec) return absl::UnavailableError(ec.message());
  const std::string offered = absl::StrJoin(protocols, ", ");
  impl->ws.set_option(beast::websocket::stream_base::decorator(
      [offered](beast::websocket::request_type& r) {
        r.set(beast::http::field::sec_websocket_protocol, offered);
      }));
  beast::websocket::response_type response;
  impl->ws.handshake(response, host_port, path, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("HTTP ", response.result_int(), ": ", ec.message()));
  }
  std::unique_ptr<WsClient> client(new WsClient(std::move(impl)));
  client->protocol_ = std::string(response[beast::http::field::sec_websocket_protocol]);
  Impl* i = client->impl_.get();
  i->reader = std::thread([i] {
    beast::flat_buffer buffer;
    for (;;) {
      beast::error_code read_ec;
      i->ws.read(buffer, read_ec);
      if (read_ec) break;
      const auto bytes = buffer.data();
      std::string message(static_cast<const char*>(bytes.data()), bytes.size());
      buffer.consume(buffer.size());
      if (message.empty()) continue;
      absl::MutexLock lock(&i->mu);
      i->data[static_cast<unsigned char>(message[0])] += message.substr(1);
    }
    absl::MutexLock lock(&i->mu);
    i->closed = true;
  });
  return client;
}

WsClient::~WsClient() {
  beast::error_code ignored;
  impl_->ws.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->reader.join();
}

absl::Status WsClient::Send(unsigned char channel, const std::string& data) {
  std::string message(1, static_cast<char>(channel));
  message += data;
  absl::MutexLock lock(&impl_->write_mu);
  beast::error_code ec;
  impl_->ws.binary(true);
  impl_->ws.write(net::buffer(message), ec);
  return ec ? absl::UnavailableError(ec.message()) : absl::OkStatus();
}

std::string WsClient::Received(unsigned char channel) {
  absl::MutexLock lock(&impl_->mu);
  return impl_->data[channel];
}

bool WsClient::AwaitData(unsigned char channel, const std::string& substring,
                         absl::Duration timeout) {
  absl::MutexLock lock(&impl_->mu);
  auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return impl_->data[channel].find(substring) != std::string::npos || impl_->closed;
  };
  impl_->mu.AwaitWithTimeout(absl::Condition(&has), timeout);
  return impl_->data[channel].find(substring) != std::string::npos;
}

bool WsClient::AwaitClosed(absl::Duration timeout) {
  absl::MutexLock lock(&impl_->mu);
  auto closed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) { return impl_->closed; };
  return impl_->mu.AwaitWithTimeout(absl::Condition(&closed), timeout);
}

}  // namespace berth::testing
