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

// Sessions served at once, and connections waiting for their request head; more are refused.
// kubelet proxies one connection per exec, attach and port-forward session.
constexpr int kMaxSessions = 256;

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
  gate_ = std::make_unique<Gate>(listen_fd_, tls_.get(),
                                 Gate::Options{.max_pending = static_cast<size_t>(kMaxSessions)},
                                 [this](std::unique_ptr<Incoming> in) { Dispatch(std::move(in)); });
  listen_fd_ = -1;  // the gate's now
  spdlog::info("streaming server on {}", base_url_);
  return absl::OkStatus();
}

void Server::Stop() {
  gate_.reset();  // no new connection from here on
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Active() == 0; };
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

void Server::Dispatch(std::unique_ptr<Incoming> in) {
  const HttpRequest& http = in->request();
  std::vector<std::string> parts = absl::StrSplit(http.path.substr(0, http.path.find('?')), '/',
                                                   absl::SkipEmpty());
  Request request;
  if (parts.size() != 2 || !TakeToken(parts[1], &request)) {
    {
      absl::MutexLock lock(&mu_);
      ++counts_.refused_unknown;
    }
    in->Refuse(404, "Not Found", "unknown or expired streaming token\n");
    return;
  }
  const size_t kind = static_cast<size_t>(request.kind);
  auto refused = [this, kind] {
    absl::MutexLock lock(&mu_);
    ++counts_.refused[kind];
  };
  const bool port_forward = request.kind == Request::Kind::kPortForward;
  const char* want = request.kind == Request::Kind::kExec     ? "exec"
                     : request.kind == Request::Kind::kAttach ? "attach"
                                                              : "portforward";
  if (parts[0] != want) {
    refused();
    in->Refuse(404, "Not Found", "unknown or expired streaming token\n");
    return;
  }
  const std::vector<std::string> upgrade = http.Values("upgrade");
  const bool spdy = !upgrade.empty() && absl::EqualsIgnoreCase(upgrade[0], "SPDY/3.1");
  const bool websocket = !upgrade.empty() && absl::EqualsIgnoreCase(upgrade[0], "websocket");
  if (!spdy && !websocket) {
    refused();
    in->Refuse(400, "Bad Request", "this endpoint needs an Upgrade to SPDY/3.1 or websocket\n");
    return;
  }
  std::string protocol;
  for (const std::string& p :
       http.Values(websocket ? "sec-websocket-protocol" : "x-stream-protocol-version")) {
    const bool ok =
        websocket ? (port_forward
                         ? (p == "SPDY/3.1+portforward.k8s.io" || p == "v4.channel.k8s.io")
                         : (p == "v5.channel.k8s.io" || p == "v4.channel.k8s.io"))
                  : (port_forward ? p == "portforward.k8s.io"
                                  : (p == "v5.channel.k8s.io" || p == "v4.channel.k8s.io" ||
                                     p == "v3.channel.k8s.io" || p == "v2.channel.k8s.io"));
    if (ok) {
      protocol = p;
      break;
    }
  }
  if (protocol.empty()) {
    refused();
    const char* speaks =
        websocket ? (port_forward ? "SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io"
                                  : "v5.channel.k8s.io, v4.channel.k8s.io")
                  : (port_forward ? "portforward.k8s.io" : "v5, v4, v3 and v2.channel.k8s.io");
    in->Refuse(403, "Forbidden",
               absl::StrCat("none of the offered ", websocket ? "WebSocket sub" : "stream ",
                            "protocols is supported; berth speaks ", speaks, "\n"));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || Active() >= kMaxSessions) {
      spdlog::warn("streaming: {} sessions already, refusing one", Active());
      ++counts_.refused[kind];
      in->Refuse(503, "Service Unavailable", "too many streaming sessions\n");
      return;
    }
    ++counts_.active[kind];
    ++counts_.started[kind];
  }
  // A session that ends, or never starts: no longer active.
  auto ended = [this, kind](bool started) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    --counts_.active[kind];
    if (!started) {
      --counts_.started[kind];
      ++counts_.refused[kind];
    }
  };
  absl::StatusOr<int> taken = in->Take();
  if (!taken.ok()) {
    spdlog::warn("streaming: cannot serve a session: {}", taken.status().message());
    absl::MutexLock lock(&mu_);
    ended(false);
    return;
  }
  const int fd = *taken;
  {
    absl::MutexLock lock(&mu_);
    connections_.insert(fd);
  }
  auto session = [this, fd, ended, request = std::move(request), protocol, websocket,
                  head = WebSocket::HttpHead{http.method, http.path, {}},
                  headers = http.headers]() mutable {
    if (websocket) {
      for (const auto& [k, v] : headers) head.headers.emplace_back(k, v);
      ServeWebSocket(fd, request, head, protocol);
    } else {
      SendAll(fd, absl::StrCat("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ",
                               protocol, "\r\n\r\n"));
      if (request.kind == Request::Kind::kPortForward) {
        ServePortForward(fd, request);
      } else {
        ServeRemoteCommand(fd, request, protocol);
      }
    }
    absl::MutexLock lock(&mu_);
    connections_.erase(fd);
    ended(true);
  };
  try {
    std::thread(std::move(session)).detach();
  } catch (const std::system_error& e) {
    // No thread to be had (a thread limit): this session goes, the server stays.
    spdlog::warn("streaming: cannot serve a session: {}", e.what());
    ::close(fd);
    absl::MutexLock lock(&mu_);
    connections_.erase(fd);
    ended(false);
  }
}

int64_t Server::Active() const {
  return counts_.active[0] + counts_.active[1] + counts_.active[2];
}

Server::SessionCounts Server::sessions() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

}  // namespace berth::cri::streaming
