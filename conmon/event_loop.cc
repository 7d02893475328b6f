#include "conmon/event_loop.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "conmon/ctl.h"

namespace berth::conmon {
namespace {

constexpr size_t kBuf = 8192;  // also the attach packet size conmon's clients expect
constexpr char kStdoutPipe = 2;
constexpr char kStderrPipe = 3;

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    if (n <= 0) return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace

EventLoop::~EventLoop() {
  for (int fd : clients_) ::close(fd);
  for (int fd : {epoll_, attach_fd_, ctl_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

std::string EventLoop::SetUpControl() {
  ctl_path_ = o_.bundle + "/ctl";
  ::unlink(ctl_path_.c_str());
  if (::mkfifo(ctl_path_.c_str(), 0600) != 0) return "mkfifo " + ctl_path_ + ": " + strerror(errno);
  // Read and write: the fifo never reports EOF when a writer goes away.
  ctl_fd_ = ::open(ctl_path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (ctl_fd_ < 0) return "open " + ctl_path_ + ": " + strerror(errno);
  if (o_.socket_dir.empty()) return "";
  ::mkdir(o_.socket_dir.c_str(), 0700);
  attach_link_ = o_.socket_dir + "/" + o_.cuuid;
  ::unlink(attach_link_.c_str());
  if (::symlink(o_.bundle.c_str(), attach_link_.c_str()) != 0) {
    return "symlink " + attach_link_ + ": " + strerror(errno);
  }
  attach_path_ = o_.bundle + "/attach";
  const std::string short_path = attach_link_ + "/attach";
  ::unlink(attach_path_.c_str());
  attach_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (short_path.size() >= sizeof addr.sun_path) return "attach socket path too long: " + short_path;
  std::strncpy(addr.sun_path, short_path.c_str(), sizeof addr.sun_path - 1);
  if (attach_fd_ < 0 || ::bind(attach_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(attach_path_.c_str(), 0700) != 0 || ::listen(attach_fd_, 10) != 0) {
    return "attach socket " + short_path + ": " + strerror(errno);
  }
  return "";
}

void EventLoop::RemoveControl() {
  if (!ctl_path_.empty()) ::unlink(ctl_path_.c_str());
  if (!attach_path_.empty()) ::unlink(attach_path_.c_str());
  if (!attach_link_.empty()) ::unlink(attach_link_.c_str());
}

int EventLoop::AwaitConsole(int listen_fd, pid_t runtime_pid) {
  for (;;) {
    pollfd p{listen_fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 50);
    if (ready > 0) return ReceiveConsole(listen_fd);
    int status = 0;
    if (::waitpid(runtime_pid, &status, WNOHANG) == runtime_pid) {
      runtime_pid_ = runtime_pid;
      runtime_status_ = status;
      runtime_reaped_ = true;
      // It may have connected just before exiting.
      p.revents = 0;
      return ::poll(&p, 1, 0) > 0 ? ReceiveConsole(listen_fd) : -1;
    }
  }
}

bool EventLoop::RuntimeStatus(pid_t pid, int* status) const {
  if (!runtime_reaped_ || pid != runtime_pid_) return false;
  *status = runtime_status_;
  return true;
}

void EventLoop::Add(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
}

void EventLoop::Del(int fd) { ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::CloseStdin() {
  if (stdio_.in < 0) return;
  if (stdio_.in != stdio_.out) ::close(stdio_.in);  // a tty's master is also the output
  stdio_.in = -1;
}

void EventLoop::OnOutput(int fd, bool drain_only) {
  char buf[kBuf + 1];
  const char pipe = fd == stdio_.err ? kStderrPipe : kStdoutPipe;
  for (int rounds = 0; drain_only || rounds < 16; ++rounds) {
    const ssize_t n = ::read(fd, buf + 1, kBuf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {  // EOF, or EIO from a pty whose other side closed
      Del(fd);
      if (fd == stdio_.err) {
        ::close(stdio_.err);
        stdio_.err = -1;
      } else if (fd == stdio_.out) {
        if (stdio_.in == stdio_.out) stdio_.in = -1;
        ::close(stdio_.out);
        stdio_.out = -1;
      }
      return;
    }
    log_->Write(pipe == kStderrPipe ? Stream::kStderr : Stream::kStdout,
                std::string_view(buf + 1, static_cast<size_t>(n)));
    buf[0] = pipe;
    for (int client : clients_) {
      (void)::send(client, buf, static_cast<size_t>(n) + 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
  }
}

void EventLoop::OnAttach() {
  for (;;) {
    const int fd = ::accept4(attach_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    clients_.push_back(fd);
    Add(fd);
  }
}

void EventLoop::OnClient(int fd) {
  char buf[kBuf];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) {
    if (stdio_.in >= 0) WriteAll(stdio_.in, buf, static_cast<size_t>(n));
    return;
  }
  Del(fd);
  ::close(fd);
  clients_.erase(std::remove(clients_.begin(), clients_.end(), fd), clients_.end());
  // stdin_once: the first attached client's end is the container's end of input.
  if (!o_.leave_stdin_open) CloseStdin();
}

void EventLoop::OnCtl() {
  char buf[512];
  ssize_t n;
  while ((n = ::read(ctl_fd_, buf, sizeof buf)) > 0) {
    ctl_pending_.append(buf, static_cast<size_t>(n));
  }
  for (const CtlMessage& m : TakeCtlMessages(&ctl_pending_)) {
    if (m.type == kCtlResize && o_.terminal && stdio_.out >= 0) {
      winsize ws{};
      ws.ws_row = static_cast<unsigned short>(m.height);
      ws.ws_col = static_cast<unsigned short>(m.width);
      ::ioctl(stdio_.out, TIOCSWINSZ, &ws);
    } else if (m.type == kCtlReopenLog) {
      log_->Reopen();
    }
  }
}

void EventLoop::MarkOom() {
  if (oom_marked_) return;
  oom_marked_ = true;
  for (const std::string& dir : {o_.persist_dir, o_.bundle}) {
    if (dir.empty()) continue;
    const int fd = ::open((dir + "/oom").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) ::close(fd);
  }
}

// Reaps every child (we are a subreaper); true once the container's process is among them.
bool EventLoop::Reap() {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    if (pid == container_pid_) {
      exited_ = true;
      wait_status_ = status;
    }
  }
  return exited_;
}

EventLoop::Result EventLoop::Run(pid_t container_pid, const Stdio& stdio, int signal_fd) {
  Result result;
  container_pid_ = container_pid;
  stdio_ = stdio;
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  for (int fd : {stdio_.out, stdio_.err}) {
    if (fd >= 0) {
      SetNonBlocking(fd);
      Add(fd);
    }
  }
  if (stdio_.in >= 0 && stdio_.in != stdio_.out) SetNonBlocking(stdio_.in);
  Add(signal_fd);
  if (attach_fd_ >= 0) Add(attach_fd_);
  if (ctl_fd_ >= 0) Add(ctl_fd_);
  if (!o_.exec && oom_.Watch(container_pid) && oom_.fd() >= 0) Add(oom_.fd());
  int timer_fd = -1;
  if (o_.timeout > 0) {
    timer_fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    itimerspec when{};
    when.it_value.tv_sec = o_.timeout;
    ::timerfd_settime(timer_fd, 0, &when, nullptr);
    Add(timer_fd);
  }
  Reap();  // it may have exited before we listened
  while (!exited_) {
    epoll_event events[16];
    const int n = ::epoll_wait(epoll_, events, 16, -1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n && !exited_; ++i) {
      const int fd = events[i].data.fd;
      if (fd == signal_fd) {
        signalfd_siginfo si;
        while (::read(signal_fd, &si, sizeof si) == sizeof si) {
          if (si.ssi_signo != SIGCHLD) ::kill(container_pid_, static_cast<int>(si.ssi_signo));
        }
        Reap();
      } else if (fd == stdio_.out || fd == stdio_.err) {
        OnOutput(fd, false);
      } else if (fd == attach_fd_) {
        OnAttach();
      } else if (fd == ctl_fd_) {
        OnCtl();
      } else if (fd == oom_.fd()) {
        if (oom_.Check()) MarkOom();
      } else if (fd == timer_fd) {
        result.timed_out = true;
        const pid_t group = ::getpgid(container_pid_);
        ::kill(group > 1 ? -group : container_pid_, SIGKILL);
        // Wait for it to go, without draining its output.
        while (::waitpid(container_pid_, &wait_status_, 0) < 0 && errno == EINTR) {
        }
        exited_ = true;
      } else {
        OnClient(fd);
      }
    }
  }
  if (!result.timed_out) {
    // What the process wrote before it exited is still in the pipes; a child it left behind may
    // hold them open, so read what is there rather than waiting for EOF.
    for (int fd : {stdio_.out, stdio_.err}) {
      if (fd >= 0) OnOutput(fd, true);
    }
  }
  log_->Flush();
  if (!o_.exec && (oom_.Check() || oom_marked_)) MarkOom();
  if (timer_fd >= 0) ::close(timer_fd);
  CloseStdin();
  result.wait_status = wait_status_;
  return result;
}

}  // namespace berth::conmon
