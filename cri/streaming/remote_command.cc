// Exec and attach over SPDY with the Kubernetes remote-command protocol (v4/v5.channel.k8s.io):
// the client opens "error", "stdin", "stdout", "stderr" and (with a tty) "resize" streams; we
// answer each, move the bytes, and end with a metav1.Status on the error stream.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <atomic>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"
#include "base/unique_fd.h"
#include "cri/streaming/server.h"
#include "cri/streaming/spdy.h"
#include "nlohmann/json.hpp"

namespace berth::cri::streaming {
namespace {

constexpr absl::Duration kStreamWait = absl::Seconds(30);

// The streams of one session and what arrived on them before the process was there.
struct Streams {
  absl::Mutex mu;
  std::map<std::string, uint32_t> by_type ABSL_GUARDED_BY(mu);
  std::string stdin_pending ABSL_GUARDED_BY(mu);
  bool stdin_closed ABSL_GUARDED_BY(mu) = false;
  bool peer_gone ABSL_GUARDED_BY(mu) = false;
  std::function<void(std::string_view)> stdin_sink ABSL_GUARDED_BY(mu);
  std::function<void()> stdin_close ABSL_GUARDED_BY(mu);
  std::function<void(unsigned, unsigned)> resize ABSL_GUARDED_BY(mu);
  std::function<void()> on_gone ABSL_GUARDED_BY(mu);  // the client left (or went idle)
  std::string resize_buffer ABSL_GUARDED_BY(mu);
  unsigned width ABSL_GUARDED_BY(mu) = 0, height ABSL_GUARDED_BY(mu) = 0;  // the latest size

  uint32_t Id(const std::string& type) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    auto it = by_type.find(type);
    return it == by_type.end() ? 0 : it->second;
  }
};

// Decodes consecutive {"Width":W,"Height":H} objects.
void FeedResize(Streams& s, std::string_view data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  s.resize_buffer.append(data);
  for (;;) {
    const size_t end = s.resize_buffer.find('}');
    if (end == std::string::npos) return;
    nlohmann::json size = nlohmann::json::parse(s.resize_buffer.substr(0, end + 1), nullptr, false);
    s.resize_buffer.erase(0, end + 1);
    if (!size.is_object()) continue;
    s.width = size.value("Width", 0u);
    s.height = size.value("Height", 0u);
    if (s.resize) s.resize(s.width, s.height);
  }
}

// Copies what arrives on `fd` to `stream` until EOF (or EIO from a pty whose process is gone),
// or, once `done` is set (the process exited), until nothing more is there: a child it left
// behind may keep the pipe open.
void Pump(spdy::Session& session, int fd, uint32_t stream, const std::atomic<bool>& done) {
  char buf[32 << 10];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 100);
    if (ready == 0) {
      if (done) return;
      continue;
    }
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    if (stream != 0 && !session.Data(stream, std::string_view(buf, static_cast<size_t>(n))).ok()) {
      return;
    }
  }
}

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

void Server::ServeRemoteCommand(int fd, const Request& request, const std::string& protocol) {
  spdy::Session session(fd);
  session.set_idle_timeout_ms(static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.idle_timeout).count()));
  Streams streams;
  spdy::Session::Handlers handlers;
  handlers.on_stream = [&](uint32_t id, const spdy::Headers& headers, bool) {
    const std::string type = spdy::HeaderValue(headers, "streamtype");
    (void)session.Reply(id);
    absl::MutexLock lock(&streams.mu);
    streams.by_type[type] = id;
  };
  handlers.on_data = [&](uint32_t id, std::string_view data, bool fin) {
    absl::MutexLock lock(&streams.mu);
    auto find = [&](const char* t) {
      auto it = streams.by_type.find(t);
      return it != streams.by_type.end() && it->second == id;
    };
    if (find("stdin")) {
      if (streams.stdin_sink) {
        if (!data.empty()) streams.stdin_sink(data);
      } else {
        streams.stdin_pending.append(data);
      }
      if (fin) {
        streams.stdin_closed = true;
        if (streams.stdin_close) streams.stdin_close();
      }
    } else if (find("resize")) {
      FeedResize(streams, data);
    }
  };
  std::thread reader([&] {
    absl::Status s = session.Run(handlers);
    if (!s.ok()) spdlog::debug("streaming session: {}", s.message());
    absl::MutexLock lock(&streams.mu);
    streams.peer_gone = true;
    if (streams.stdin_close) streams.stdin_close();
    if (streams.on_gone) streams.on_gone();
  });
  auto finish = [&](int exit_code, const std::string& error) {
    if (uint32_t e = streams.Id("error")) (void)session.Data(e, StatusJson(exit_code, error), true);
    for (const char* t : {"stdout", "stderr"}) {
      if (uint32_t id = streams.Id(t)) (void)session.Data(id, "", true);
    }
    session.Close();
    reader.join();
  };

  // The streams the request promised: error always; stdin, stdout, stderr as asked (no stderr
  // with a tty); resize with a tty.
  {
    absl::MutexLock lock(&streams.mu);
    auto all_there = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(streams.mu) {
      if (streams.peer_gone) return true;
      auto has = [&](const char* t) { return streams.by_type.contains(t); };
      return has("error") && (!request.stdin || has("stdin")) &&
             (!request.stdout || has("stdout")) &&
             (!request.stderr || request.tty || has("stderr")) && (!request.tty || has("resize"));
    };
    if (!streams.mu.AwaitWithTimeout(absl::Condition(&all_there), kStreamWait)) {
      spdlog::warn("streaming {}: the client did not open its streams in time", protocol);
    }
  }
  const uint32_t out_stream = streams.Id("stdout");
  const uint32_t err_stream = streams.Id("stderr");

  if (request.kind == Request::Kind::kExec) {
    unsigned width = 0, height = 0;
    if (request.tty) {
      // Clients send the terminal's size first thing: start with it.
      absl::MutexLock lock(&streams.mu);
      auto sized = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(streams.mu) {
        return streams.width > 0 || streams.peer_gone;
      };
      streams.mu.AwaitWithTimeout(absl::Condition(&sized), absl::Seconds(1));
      width = streams.width;
      height = streams.height;
    }
    absl::StatusOr<std::unique_ptr<pod::ExecProcess>> started =
        containers_->StartExec(request.id, request.cmd, request.tty, width, height);
    if (!started.ok()) {
      finish(-1, std::string(started.status().message()));
      return;
    }
    pod::ExecProcess& process = **started;
    {
      absl::MutexLock lock(&streams.mu);
      const int in = process.stdin_fd();
      if (!streams.stdin_pending.empty()) WriteAll(in, streams.stdin_pending);
      streams.stdin_sink = [in](std::string_view d) { WriteAll(in, d); };
      streams.stdin_close = [&process] { process.CloseStdin(); };
      streams.resize = [&process](unsigned w, unsigned h) { process.Resize(w, h); };
      // Nobody is left to see the output: the session's process goes too.
      streams.on_gone = [&process] { process.Kill(); };
      if (streams.peer_gone) process.Kill();
      if (!request.stdin || streams.stdin_closed) process.CloseStdin();
    }
    std::atomic<bool> done = false;
    std::thread err_pump;
    if (process.stderr_fd() >= 0) {
      err_pump = std::thread([&] { Pump(session, process.stderr_fd(), err_stream, done); });
    }
    std::thread out_pump([&] { Pump(session, process.stdout_fd(), out_stream, done); });
    const int code = process.Wait();
    done = true;
    out_pump.join();
    if (err_pump.joinable()) err_pump.join();
    {
      absl::MutexLock lock(&streams.mu);
      streams.stdin_sink = nullptr;
      streams.stdin_close = nullptr;
      streams.resize = nullptr;
      streams.on_gone = nullptr;
    }
    finish(code, "");
    return;
  }

  // Attach: the monitor's SEQPACKET socket; every packet starts with the stream byte.
  absl::StatusOr<std::pair<std::string, std::string>> paths = containers_->AttachPaths(request.id);
  if (!paths.ok()) {
    finish(-1, std::string(paths.status().message()));
    return;
  }
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, paths->first.c_str(), sizeof addr.sun_path - 1);
  if (!sock.valid() || ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    finish(-1, absl::StrCat("attach to container ", request.id, ": ", std::strerror(errno)));
    return;
  }
  const std::string ctl = paths->second;
  {
    absl::MutexLock lock(&streams.mu);
    const int s = sock.get();
    if (!streams.stdin_pending.empty()) {
      (void)::send(s, streams.stdin_pending.data(), streams.stdin_pending.size(), MSG_NOSIGNAL);
    }
    streams.stdin_sink = [s](std::string_view d) {
      (void)::send(s, d.data(), d.size(), MSG_NOSIGNAL);
    };
    streams.stdin_close = [s] { ::shutdown(s, SHUT_WR); };
    streams.resize = [ctl](unsigned w, unsigned h) {
      UniqueFd f(::open(ctl.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
      const std::string line = absl::StrCat("1 ", h, " ", w, "\n");
      if (f.valid()) (void)!::write(f.get(), line.data(), line.size());
    };
  }
  char buf[8193];
  for (;;) {
    pollfd p{sock.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, 500);
    {
      absl::MutexLock lock(&streams.mu);
      if (streams.peer_gone) break;
    }
    if (ready <= 0) continue;
    const ssize_t n = ::recv(sock.get(), buf, sizeof buf, 0);
    if (n <= 0) break;  // the container exited (or the monitor went away)
    const uint32_t target = buf[0] == 3 ? err_stream : out_stream;
    if (target != 0 && n > 1) {
      (void)session.Data(target, std::string_view(buf + 1, static_cast<size_t>(n - 1)));
    }
  }
  {
    absl::MutexLock lock(&streams.mu);
    streams.stdin_sink = nullptr;
    streams.stdin_close = nullptr;
    streams.resize = nullptr;
  }
  finish(0, "");
}

}  // namespace berth::cri::streaming
