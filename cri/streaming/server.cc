#include "cri/streaming/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/logging.h"
#include "base/random_id.h"
#include "cri/streaming/tls.h"
#include "nlohmann/json.hpp"

namespace berth::cri::streaming {
namespace {

constexpr size_t kMaxHead = 16 << 10;
// The whole request head must arrive within this (not per byte: a slow client holds nothing).
constexpr auto kHeadDeadline = std::chrono::seconds(10);
// Connections served at once; more are refused at once. kubelet proxies one per exec, attach and
// port-forward session.
constexpr int kMaxConnections = 256;

std::string NewToken() {
  std::string token;
  absl::WebSafeBase64Escape(RandomBytes(24), &token);
  return token;
}

void SendAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

void Respond(int fd, int code, const char* reason, const std::string& body) {
  SendAll(fd, absl::StrCat("HTTP/1.1 ", code, " ", reason,
                           "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ",
                           body.size(), "\r\nConnection: close\r\n\r\n", body));
}

struct HttpRequest {
  std::string method, path;
  std::multimap<std::string, std::string> headers;  // lower-case names
  std::vector<std::string> Values(const std::string& name) const {
    std::vector<std::string> out;
    auto [a, b] = headers.equal_range(name);
    for (auto it = a; it != b; ++it) {
      for (absl::string_view v : absl::StrSplit(it->second, ',')) {
        v = absl::StripAsciiWhitespace(v);
        if (!v.empty()) out.emplace_back(v);
      }
    }
    return out;
  }
};

// Reads the request head (up to the blank line); nothing after it is read, as the client waits
// for our 101 before it sends frames.
bool ReadHead(int fd, HttpRequest* out) {
  std::string head;
  const auto deadline = std::chrono::steady_clock::now() + kHeadDeadline;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    // Look before taking: only the head's bytes are consumed, whatever follows it stays.
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK);
    if (n <= 0) return false;
    const size_t before = head.size();
    head.append(buf, static_cast<size_t>(n));
    const size_t end = head.find("\r\n\r\n", before >= 3 ? before - 3 : 0);
    const size_t take = end == std::string::npos ? static_cast<size_t>(n) : end + 4 - before;
    head.resize(before + take);
    for (size_t done = 0; done < take;) {
      const ssize_t r = ::recv(fd, buf, take - done, 0);
      if (r <= 0) return false;
      done += static_cast<size_t>(r);
    }
    if (end != std::string::npos) break;
    if (head.size() >= kMaxHead) return false;
  }
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
  if (first.size() < 2) return false;
  out->method = first[0];
  out->path = first[1];
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    out->headers.emplace(absl::AsciiStrToLower(lines[i].substr(0, colon)),
                         std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
  }
  return true;
}

}  // namespace

std::string StatusJson(int exit_code, const std::string& error) {
  nlohmann::json status = {{"metadata", nlohmann::json::object()}};
  if (error.empty() && exit_code == 0) {
    status["status"] = "Success";
  } else if (error.empty()) {
    status["status"] = "Failure";
    status["message"] =
        absl::StrCat("command terminated with non-zero exit code: exit status ", exit_code);
    status["reason"] = "NonZeroExitCode";
    status["details"] = {
        {"causes", {{{"reason", "ExitCode"}, {"message", std::to_string(exit_code)}}}}};
  } else {
    status["status"] = "Failure";
    status["message"] = error;
  }
  return status.dump();
}

Server::Server(const config::StreamingConfig& config, pod::ContainerManager* containers,
               pod::SandboxManager* sandboxes, absl::Duration token_lifetime)
    : config_(config),
      token_lifetime_(token_lifetime),
      containers_(containers),
      sandboxes_(sandboxes) {}

Server::~Server() { Stop(); }

absl::Status Server::Start() {
  if (!config_.tls_cert.empty()) {
    absl::StatusOr<std::unique_ptr<TlsTerminator>> tls =
        TlsTerminator::Create(config_.tls_cert, config_.tls_key);
    if (!tls.ok()) return tls.status();
    tls_ = *std::move(tls);
  }
  const std::string host = config_.address.empty() ? "127.0.0.1" : config_.address;
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
  if (auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
      ::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(config_.port));
    length = sizeof *v4;
  } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
             ::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(config_.port));
    length = sizeof *v6;
    family = AF_INET6;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("streaming.address \"", host,
                                                   "\" is not an IP address"));
  }
  listen_fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&storage), length) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    const std::string why = std::strerror(errno);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    return absl::UnavailableError(
        absl::StrCat("streaming server on ", host, ":", config_.port, ": ", why));
  }
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&storage), &length);
  const uint16_t port = family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port)
                                          : ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
  // The URL always names the host: 0.0.0.0 / :: would not be reachable as such.
  std::string url_host = host;
  if (host == "0.0.0.0") url_host = "127.0.0.1";
  if (host == "::") url_host = "::1";
  if (family == AF_INET6) url_host = absl::StrCat("[", url_host, "]");
  base_url_ = absl::StrCat(tls_ ? "https://" : "http://", url_host, ":", port);
  acceptor_ = std::jthread([this](std::stop_token stop) { AcceptLoop(stop); });
  spdlog::info("streaming server on {}", base_url_);
  return absl::OkStatus();
}

void Server::Stop() {
  if (acceptor_.joinable()) {
    acceptor_.request_stop();
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; };
  mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Seconds(10));
}

std::string Server::Register(Request request) {
  const char* verb = request.kind == Request::Kind::kExec     ? "exec"
                     : request.kind == Request::Kind::kAttach ? "attach"
                                                              : "portforward";
  const std::string token = NewToken();
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = it->second.expires < now ? pending_.erase(it) : std::next(it);
  }
  pending_[token] = {std::move(request), now + token_lifetime_};
  return absl::StrCat(base_url_, "/", verb, "/", token);
}

bool Server::TakeToken(const std::string& token, Request* out) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(token);
  if (it == pending_.end()) return false;
  const bool fresh = it->second.expires >= absl::Now();
  if (fresh) *out = std::move(it->second.request);
  pending_.erase(it);  // one use only, whether or not it was still valid
  return fresh;
}

void Server::AcceptLoop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (stop.stop_requested()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ || active_ >= kMaxConnections) {
        if (!stopping_) spdlog::warn("streaming: {} connections already, refusing one", active_);
        ::close(fd);
        continue;
      }
      connections_.insert(fd);
      ++active_;
    }
    auto forget = [this, fd] {
      absl::MutexLock lock(&mu_);
      connections_.erase(fd);
      --active_;
    };
    try {
      std::thread([this, fd, forget] {
        if (tls_) {
          absl::StatusOr<int> plain = tls_->Wrap(fd);  // takes fd
          if (plain.ok()) {
            Serve(*plain);
          } else {
            spdlog::debug("streaming: {}", plain.status().message());
          }
        } else {
          Serve(fd);
        }
        forget();
      }).detach();
    } catch (const std::system_error& e) {
      // No thread to be had (a thread limit): this connection goes, the server stays.
      spdlog::warn("streaming: cannot serve a connection: {}", e.what());
      ::close(fd);
      forget();
    }
  }
}

void Server::Serve(int fd) {
  HttpRequest http;
  if (!ReadHead(fd, &http)) {
    ::close(fd);
    return;
  }
  std::vector<std::string> parts = absl::StrSplit(http.path.substr(0, http.path.find('?')), '/',
                                                   absl::SkipEmpty());
  Request request;
  if (parts.size() != 2 || !TakeToken(parts[1], &request)) {
    Respond(fd, 404, "Not Found", "unknown or expired streaming token\n");
    ::close(fd);
    return;
  }
  const char* want = request.kind == Request::Kind::kExec     ? "exec"
                     : request.kind == Request::Kind::kAttach ? "attach"
                                                              : "portforward";
  if (parts[0] != want) {
    Respond(fd, 404, "Not Found", "unknown or expired streaming token\n");
    ::close(fd);
    return;
  }
  const std::vector<std::string> upgrade = http.Values("upgrade");
  const bool spdy = !upgrade.empty() && absl::EqualsIgnoreCase(upgrade[0], "SPDY/3.1");
  const bool websocket = !upgrade.empty() && absl::EqualsIgnoreCase(upgrade[0], "websocket");
  if (websocket) {
    std::string protocol;
    for (const std::string& p : http.Values("sec-websocket-protocol")) {
      const bool ok = request.kind == Request::Kind::kPortForward
                          ? (p == "SPDY/3.1+portforward.k8s.io" || p == "v4.channel.k8s.io")
                          : (p == "v5.channel.k8s.io" || p == "v4.channel.k8s.io");
      if (ok) {
        protocol = p;
        break;
      }
    }
    if (protocol.empty()) {
      Respond(fd, 403, "Forbidden",
              absl::StrCat("none of the offered WebSocket subprotocols is supported; berth "
                           "speaks ",
                           request.kind == Request::Kind::kPortForward
                               ? "SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io"
                               : "v5.channel.k8s.io, v4.channel.k8s.io",
                           "\n"));
      ::close(fd);
      return;
    }
    WebSocket::HttpHead head{http.method, http.path, {}};
    for (const auto& [k, v] : http.headers) head.headers.emplace_back(k, v);
    ServeWebSocket(fd, request, head, protocol);
    return;
  }
  if (!spdy) {
    Respond(fd, 400, "Bad Request", "this endpoint needs an Upgrade to SPDY/3.1 or websocket\n");
    ::close(fd);
    return;
  }
  const std::vector<std::string> offered = http.Values("x-stream-protocol-version");
  std::string protocol;
  for (const std::string& p : offered) {
    const bool ok = request.kind == Request::Kind::kPortForward
                        ? p == "portforward.k8s.io"
                        : (p == "v5.channel.k8s.io" || p == "v4.channel.k8s.io" ||
                           p == "v3.channel.k8s.io" || p == "v2.channel.k8s.io");
    if (ok) {
      protocol = p;
      break;
    }
  }
  if (protocol.empty()) {
    Respond(fd, 403, "Forbidden",
            absl::StrCat("none of the offered stream protocols is supported; berth speaks ",
                         request.kind == Request::Kind::kPortForward
                             ? "portforward.k8s.io"
                             : "v5, v4, v3 and v2.channel.k8s.io",
                         "\n"));
    ::close(fd);
    return;
  }
  SendAll(fd, absl::StrCat("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                           "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ",
                           protocol, "\r\n\r\n"));
  if (request.kind == Request::Kind::kPortForward) {
    ServePortForward(fd, request);
  } else {
    ServeRemoteCommand(fd, request, protocol);
  }
}

}  // namespace berth::cri::streaming
