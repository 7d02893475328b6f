#include "cri/streaming/gate.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/logging.h"
#include "cri/streaming/tls.h"

namespace berth::cri::streaming {

std::vector<std::string> HttpRequest::Values(const std::string& name) const {
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

bool ParseHead(const std::string& head, HttpRequest* out) {
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

namespace {

using Clock = std::chrono::steady_clock;
using Io = TlsTerminator::Session::Io;

void SetBlocking(int fd, bool blocking) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return;
  ::fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

std::string Answer(int code, const char* reason, const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason,
                      "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ",
                      body.size(), "\r\nConnection: close\r\n\r\n", body);
}

class PlainIncoming final : public Incoming {
 public:
  PlainIncoming(int fd, HttpRequest request) : fd_(fd), request_(std::move(request)) {}
  ~PlainIncoming() override {
    if (fd_ >= 0) ::close(fd_);
  }
  const HttpRequest& request() const override { return request_; }
  void Refuse(int code, const char* reason, const std::string& body) override {
    const std::string answer = Answer(code, reason, body);
    (void)!::send(fd_, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd_);
    fd_ = -1;
  }
  absl::StatusOr<int> Take() override {
    SetBlocking(fd_, true);
    return std::exchange(fd_, -1);
  }

 private:
  int fd_;
  HttpRequest request_;
};

class TlsIncoming final : public Incoming {
 public:
  TlsIncoming(std::unique_ptr<TlsTerminator::Session> session, HttpRequest request)
      : session_(std::move(session)), request_(std::move(request)) {}
  const HttpRequest& request() const override { return request_; }
  void Refuse(int code, const char* reason, const std::string& body) override {
    session_->WriteAndClose(Answer(code, reason, body));
    session_.reset();
  }
  absl::StatusOr<int> Take() override {
    absl::StatusOr<int> plain = session_->StartRelay();
    session_.reset();
    return plain;
  }

 private:
  std::unique_ptr<TlsTerminator::Session> session_;
  HttpRequest request_;
};

}  // namespace

struct Gate::Pending {
  int fd = -1;
  Clock::time_point deadline;
  std::unique_ptr<TlsTerminator::Session> tls;  // owns fd when set
  bool handshaken = false;
  std::string head;
  ~Pending() {
    if (!tls && fd >= 0) ::close(fd);
  }
};

Gate::Gate(int listen_fd, TlsTerminator* tls, Options options,
           std::function<void(std::unique_ptr<Incoming>)> on_request)
    : listen_fd_(listen_fd), tls_(tls), options_(options), on_request_(std::move(on_request)) {
  SetBlocking(listen_fd_, false);
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = wake_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  thread_ = std::thread([this] { Run(); });
}

Gate::~Gate() {
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  pending_.clear();
  ::close(listen_fd_);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void Gate::Watch(Pending& p, bool want_write) {
  epoll_event ev{};
  ev.events = want_write ? EPOLLOUT : EPOLLIN;
  ev.data.fd = p.fd;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, p.fd, &ev);
}

void Gate::Run() {
  std::vector<epoll_event> events(64);
  for (;;) {
    // Wake for the nearest deadline.
    int timeout = -1;
    if (!pending_.empty()) {
      Clock::time_point nearest = Clock::time_point::max();
      for (const auto& [fd, p] : pending_) nearest = std::min(nearest, p->deadline);
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(nearest - Clock::now()).count();
      timeout = static_cast<int>(std::clamp<int64_t>(left + 1, 0, 60'000));
    }
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0 && errno != EINTR) {
      spdlog::error("streaming: epoll_wait: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<size_t>(i)].data.fd;
      if (fd == wake_fd_) return;
      if (fd == listen_fd_) {
        AcceptAll();
        continue;
      }
      auto it = pending_.find(fd);
      if (it != pending_.end() && !Step(*it->second)) pending_.erase(it);
    }
    const Clock::time_point now = Clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second->deadline <= now) {
        spdlog::debug("streaming: a connection sent no complete request in time");
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void Gate::AcceptAll() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::warn("streaming: accept: {}", std::strerror(errno));
      }
      return;
    }
    if (pending_.size() >= options_.max_pending) {
      spdlog::warn("streaming: {} connections wait for their request already, refusing one",
                   pending_.size());
      ::close(fd);
      continue;
    }
    auto p = std::make_unique<Pending>();
    p->fd = fd;
    p->deadline = Clock::now() + options_.head_deadline;
    if (tls_ != nullptr) p->tls = tls_->NewSession(fd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) continue;  // p closes fd
    Pending& ref = *p;
    pending_[fd] = std::move(p);
    // A client may have sent everything already.
    if (!Step(ref)) pending_.erase(fd);
  }
}

bool Gate::Step(Pending& p) {
  if (p.tls && !p.handshaken) {
    const Io io = p.tls->Handshake();
    if (io == Io::kFailed) {
      spdlog::debug("streaming: TLS handshake: {}", p.tls->error());
      return false;
    }
    if (io != Io::kDone) {
      Watch(p, io == Io::kWantWrite);
      return true;
    }
    p.handshaken = true;
    Watch(p, false);
  }
  char buf[4096];
  for (;;) {
    // Look before taking: only the head's bytes are consumed; whatever follows stays.
    size_t n = 0;
    if (p.tls) {
      const Io io = p.tls->Peek(buf, sizeof buf, &n);
      if (io == Io::kFailed) return false;
      if (io != Io::kDone) {
        Watch(p, io == Io::kWantWrite);
        return true;
      }
    } else {
      const ssize_t r = ::recv(p.fd, buf, sizeof buf, MSG_PEEK);
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
      if (r <= 0) return false;
      n = static_cast<size_t>(r);
    }
    const size_t before = p.head.size();
    p.head.append(buf, n);
    const size_t end = p.head.find("\r\n\r\n", before >= 3 ? before - 3 : 0);
    const size_t take = end == std::string::npos ? n : end + 4 - before;
    p.head.erase(before + take);
    // Bytes that were peeked are there to be read at once.
    size_t done = 0;
    while (done < take) {
      size_t got = 0;
      if (p.tls) {
        if (p.tls->Read(buf, take - done, &got) != Io::kDone) return false;
      } else {
        const ssize_t r = ::recv(p.fd, buf, take - done, 0);
        if (r <= 0) return false;
        got = static_cast<size_t>(r);
      }
      done += got;
    }
    if (end != std::string::npos) break;
    if (p.head.size() >= options_.max_head) {
      spdlog::debug("streaming: a request head over {} bytes", options_.max_head);
      return false;
    }
  }
  HttpRequest request;
  if (!ParseHead(p.head, &request)) return false;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, p.fd, nullptr);
  std::unique_ptr<Incoming> incoming;
  if (p.tls) {
    incoming = std::make_unique<TlsIncoming>(std::move(p.tls), std::move(request));
  } else {
    incoming = std::make_unique<PlainIncoming>(p.fd, std::move(request));
  }
  p.fd = -1;  // the Incoming owns the connection now
  on_request_(std::move(incoming));
  return false;
}

}  // namespace berth::cri::streaming
