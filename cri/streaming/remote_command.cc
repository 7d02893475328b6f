// Exec and attach for the Kubernetes remote-command protocols, whatever the transport: start the
// process (or reach the monitor's attach socket), move the bytes, end with a metav1.Status.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"
#include "cri/streaming/server.h"
#include "cri/streaming/transport.h"

namespace berth::cri::streaming {
namespace {

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Copies what arrives on `fd` to `channel` until EOF (or EIO from a pty whose process is gone),
// or, once `done` is set (the process exited), until nothing more is there: a child it left
// behind may keep the pipe open.
void Pump(Transport& t, int fd, Channel channel, const std::atomic<bool>& done) {
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
    if (!t.Send(channel, std::string_view(buf, static_cast<size_t>(n)))) return;
  }
}

}  // namespace

void Server::RunRemoteCommand(const Request& request, Transport& t, Inbound& in) {
  t.AwaitReady(request);
  if (request.kind == Request::Kind::kExec) {
    unsigned width = 0, height = 0;
    // Clients send the terminal's size first thing: start with it.
    if (request.tty) std::tie(width, height) = in.AwaitSize(absl::Seconds(1));
    absl::StatusOr<std::unique_ptr<pod::ExecProcess>> started =
        containers_->StartExec(request.id, request.cmd, request.tty, width, height);
    if (!started.ok()) {
      t.Finish(-1, std::string(started.status().message()));
      return;
    }
    pod::ExecProcess& process = **started;
    const int stdin_fd = process.stdin_fd();
    in.Connect([stdin_fd](std::string_view d) { WriteAll(stdin_fd, d); },
               [&process] { process.CloseStdin(); },
               [&process](unsigned w, unsigned h) { process.Resize(w, h); },
               // Nobody is left to see the output: the session's process goes too.
               [&process] { process.Kill(); });
    if (!request.stdin) process.CloseStdin();
    std::atomic<bool> done = false;
    std::thread err_pump;
    if (process.stderr_fd() >= 0) {
      err_pump = std::thread([&] { Pump(t, process.stderr_fd(), Channel::kStderr, done); });
    }
    std::thread out_pump([&] { Pump(t, process.stdout_fd(), Channel::kStdout, done); });
    const int code = process.Wait();
    done = true;
    out_pump.join();
    if (err_pump.joinable()) err_pump.join();
    in.Clear();
    t.Finish(code, "");
    return;
  }

  // Attach: the monitor's SEQPACKET socket; every packet starts with the stream byte.
  absl::StatusOr<std::pair<std::string, std::string>> paths = containers_->AttachPaths(request.id);
  if (!paths.ok()) {
    t.Finish(-1, std::string(paths.status().message()));
    return;
  }
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, paths->first.c_str(), sizeof addr.sun_path - 1);
  if (!sock.valid() || ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    t.Finish(-1, absl::StrCat("attach to container ", request.id, ": ", std::strerror(errno)));
    return;
  }
  const std::string ctl = paths->second;
  const int s = sock.get();
  in.Connect([s](std::string_view d) { (void)::send(s, d.data(), d.size(), MSG_NOSIGNAL); },
             [s] { ::shutdown(s, SHUT_WR); },
             [ctl](unsigned w, unsigned h) {
               UniqueFd f(::open(ctl.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
               const std::string line = absl::StrCat("1 ", h, " ", w, "\n");
               if (f.valid()) (void)!::write(f.get(), line.data(), line.size());
             },
             nullptr);
  char buf[8193];
  while (!in.gone()) {
    pollfd p{s, POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) continue;
    const ssize_t n = ::recv(s, buf, sizeof buf, 0);
    if (n <= 0) break;  // the container exited (or the monitor went away)
    if (n > 1 && ((buf[0] == 3 && request.stderr) || (buf[0] != 3 && request.stdout))) {
      t.Send(buf[0] == 3 ? Channel::kStderr : Channel::kStdout,
             std::string_view(buf + 1, static_cast<size_t>(n - 1)));
    }
  }
  in.Clear();
  t.Finish(0, "");
}

}  // namespace berth::cri::streaming
