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
#include <cstdio>
#include <cstring>

#include "conmon/ctl.h"
#include "conmon/pod_request.h"

namespace berth::conmon {
namespace {

constexpr size_t kBuf = 8192;  // also the attach packet size conmon's clients expect
constexpr char kStdoutPipe = 2;
constexpr char kStderrPipe = 3;
constexpr size_t kMaxUnclaimed = 1024;

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

// Whatever the runtime printed before it failed: its message for the caller.
std::string ReadWhatIsThere(int fd) {
  if (fd < 0) return "";
  SetNonBlocking(fd);
  std::string out;
  char buf[4096];
  ssize_t n;
  while (out.size() < 16384 && (n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, n);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

int ExitStatusOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

int Timer(int seconds) {
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  itimerspec when{};
  when.it_value.tv_sec = seconds;
  if (fd >= 0) ::timerfd_settime(fd, 0, &when, nullptr);
  return fd;
}

}  // namespace

struct EventLoop::Container {
  Container(const Options& options, SyncPipe pipe, bool close)
      : o(options),
        log(options.log_path, options.log_size_max, options.log_global_size_max),
        report(pipe),
        close_report(close) {}

  Options o;
  CriLog log;
  SyncPipe report;
  bool close_report;
  Stdio stdio;
  std::string console_path;  // the runtime hands a tty's master over on it
  int console_listen = -1;
  pid_t runtime_pid = -1;    // until the runtime is reaped
  pid_t pid = -1;            // the container's process, once created
  int attach_fd = -1;
  std::string attach_link;   // <socket-dir>/<cuuid>
  std::string attach_path;
  int ctl_fd = -1;
  std::string ctl_path;
  std::string ctl_pending;   // a ctl line not yet complete
  std::vector<int> clients;
  OomWatcher oom;
  bool oom_marked = false;
  int timer_fd = -1;
  bool timed_out = false;

  std::string SyncKey() const {
    if (o.api_version >= 1) return "data";
    return o.exec ? "exit_code" : "pid";
  }
};

EventLoop::EventLoop(int signal_fd) : epoll_(::epoll_create1(EPOLL_CLOEXEC)), signal_fd_(signal_fd) {
  Add(signal_fd_, Kind::kSignal);
}

EventLoop::~EventLoop() {
  while (!containers_.empty()) Drop(*containers_.back());
  for (auto& [fd, data] : requests_) ::close(fd);
  for (int* fd : {&listen_fd_, &idle_fd_, &epoll_}) Close(fd);
}

void EventLoop::Add(int fd, Kind kind, Container* c) {
  if (fd < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  targets_[fd] = Target{kind, c};
}

// Stops watching and closes *fd.
void EventLoop::Close(int* fd) {
  if (*fd < 0) return;
  if (targets_.erase(*fd) > 0) ::epoll_ctl(epoll_, EPOLL_CTL_DEL, *fd, nullptr);
  ::close(*fd);
  *fd = -1;
  changed_ = true;
}

std::string EventLoop::SetUpControl(Container& c) {
  const Options& o = c.o;
  c.ctl_path = o.bundle + "/ctl";
  ::unlink(c.ctl_path.c_str());
  if (::mkfifo(c.ctl_path.c_str(), 0600) != 0) {
    return "mkfifo " + c.ctl_path + ": " + strerror(errno);
  }
  // Read and write: the fifo never reports EOF when a writer goes away.
  c.ctl_fd = ::open(c.ctl_path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (c.ctl_fd < 0) return "open " + c.ctl_path + ": " + strerror(errno);
  if (o.socket_dir.empty()) return "";
  ::mkdir(o.socket_dir.c_str(), 0700);
  c.attach_link = o.socket_dir + "/" + o.cuuid;
  ::unlink(c.attach_link.c_str());
  if (::symlink(o.bundle.c_str(), c.attach_link.c_str()) != 0) {
    return "symlink " + c.attach_link + ": " + strerror(errno);
  }
  c.attach_path = o.bundle + "/attach";
  const std::string short_path = c.attach_link + "/attach";
  ::unlink(c.attach_path.c_str());
  c.attach_fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (short_path.size() >= sizeof addr.sun_path) return "attach socket path too long: " + short_path;
  std::strncpy(addr.sun_path, short_path.c_str(), sizeof addr.sun_path - 1);
  if (c.attach_fd < 0 || ::bind(c.attach_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(c.attach_path.c_str(), 0700) != 0 || ::listen(c.attach_fd, 10) != 0) {
    return "attach socket " + short_path + ": " + strerror(errno);
  }
  return "";
}

void EventLoop::RemoveControl(Container& c) {
  for (std::string* path : {&c.ctl_path, &c.attach_path, &c.attach_link}) {
    if (!path->empty()) ::unlink(path->c_str());
    path->clear();
  }
  if (!c.console_path.empty()) {
    ::unlink(c.console_path.c_str());
    ::rmdir(c.console_path.substr(0, c.console_path.rfind('/')).c_str());
    c.console_path.clear();
  }
}

void EventLoop::Start(const Options& o, SyncPipe report, bool close_report) {
  containers_.push_back(std::make_unique<Container>(o, report, close_report));
  Container& c = *containers_.back();
  if (int err = c.log.Open(); err != 0) {
    return Fail(c, "open log " + o.log_path + ": " + std::strerror(err));
  }
  // stdio: pipes, or a pty the runtime hands over on the console socket.
  WorkerFds worker;
  if (o.terminal) {
    c.console_listen = ListenConsoleSocket(&c.console_path);
    if (c.console_listen < 0) return Fail(c, std::string("console socket: ") + std::strerror(errno));
  } else if (int err = MakePipes(o.stdin, &c.stdio, &worker); err != 0) {
    for (int fd : {worker.in, worker.out, worker.err}) {
      if (fd >= 0) ::close(fd);
    }
    return Fail(c, std::string("pipes: ") + std::strerror(err));
  }
  std::string bad;
  if (!o.exec) bad = SetUpControl(c);
  if (bad.empty()) {
    c.runtime_pid = SpawnRuntime(RuntimeArgv(o, c.console_path), worker);
    if (c.runtime_pid < 0) bad = "start " + o.runtime + ": " + std::strerror(errno);
  }
  for (int fd : {worker.in, worker.out, worker.err}) {
    if (fd >= 0) ::close(fd);
  }
  if (!bad.empty()) return Fail(c, bad);
  Add(c.console_listen, Kind::kConsole, &c);
  Reap();  // a runtime that failed at once may have gone before we watched for it
}

void EventLoop::Serve(int listen_fd, int idle_seconds) {
  listen_fd_ = listen_fd;
  SetNonBlocking(listen_fd_);
  Add(listen_fd_, Kind::kListen);
  idle_fd_ = Timer(idle_seconds);
  Add(idle_fd_, Kind::kIdle);
}

// Reports the failure and forgets the container: what it set up is removed. Its runtime is not
// running (it failed to start, or it exited).
void EventLoop::Fail(Container& c, const std::string& message) {
  std::fprintf(stderr, "berth-conmon: %s\n", message.c_str());
  create_failed_ = true;
  // Its files go before the answer, whoever reads it finds nothing left: its sockets, and a pod
  // monitor's pid file of it (a monitor of its own removes its pid file as it exits).
  RemoveControl(c);
  if (c.close_report && !c.o.conmon_pidfile.empty()) ::unlink(c.o.conmon_pidfile.c_str());
  c.report.Send(c.SyncKey(), -1, message);
  Drop(c);
}

// Closes everything of the container's and removes it from the loop.
void EventLoop::Drop(Container& c) {
  RemoveControl(c);
  if (c.stdio.in == c.stdio.out) c.stdio.in = -1;  // a tty's master is also the output
  for (int* fd : {&c.console_listen, &c.attach_fd, &c.ctl_fd, &c.timer_fd, &c.stdio.in,
                  &c.stdio.out, &c.stdio.err}) {
    Close(fd);
  }
  for (int fd : c.clients) Close(&fd);
  if (c.oom.fd() >= 0 && targets_.erase(c.oom.fd()) > 0) {
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.oom.fd(), nullptr);
  }
  if (c.close_report) {
    c.report.Close();
    // A pod monitor's last word on a container: berthd waits for its pid file to go before it
    // removes the container's files.
    if (!c.o.conmon_pidfile.empty()) ::unlink(c.o.conmon_pidfile.c_str());
  }
  changed_ = true;
  std::erase_if(containers_, [&](const std::unique_ptr<Container>& p) { return p.get() == &c; });
}

void EventLoop::OnConsole(Container& c) {
  const int master = ReceiveConsole(c.console_listen);
  Close(&c.console_listen);
  ::unlink(c.console_path.c_str());
  ::rmdir(c.console_path.substr(0, c.console_path.rfind('/')).c_str());
  c.console_path.clear();
  if (master < 0) return;
  c.stdio.out = master;
  if (c.o.stdin) c.stdio.in = ::dup(master);
}

void EventLoop::OnRuntimeExit(Container& c, int status) {
  c.runtime_pid = -1;
  if (c.console_listen >= 0) {
    pollfd p{c.console_listen, POLLIN, 0};  // it may have connected just before exiting
    if (::poll(&p, 1, 0) > 0) {
      OnConsole(c);
    } else {
      Close(&c.console_listen);
    }
  }
  const Options& o = c.o;
  const bool runtime_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  const pid_t pid = ReadPidFile(o.container_pidfile);
  if (!runtime_ok || pid <= 0) {
    std::string why = ReadWhatIsThere(c.stdio.err);
    if (why.empty()) why = ReadWhatIsThere(c.stdio.out);
    if (why.empty()) {
      why = runtime_ok ? "the runtime wrote no pid file"
                       : "the runtime exited with status " + std::to_string(ExitStatusOf(status));
    }
    return Fail(c, o.runtime + (o.exec ? " exec: " : o.run ? " run: " : " create: ") + why);
  }
  if (o.terminal && c.stdio.out < 0) return Fail(c, "the runtime did not set up the terminal");
  c.pid = pid;
  if (!o.exec || o.api_version >= 1) c.report.Send(c.SyncKey(), pid);
  if (c.close_report) c.report.Close();
  Add(c.stdio.out, Kind::kOutput, &c);
  Add(c.stdio.err, Kind::kOutput, &c);
  for (int fd : {c.stdio.out, c.stdio.err}) {
    if (fd >= 0) SetNonBlocking(fd);
  }
  if (c.stdio.in >= 0 && c.stdio.in != c.stdio.out) SetNonBlocking(c.stdio.in);
  Add(c.attach_fd, Kind::kAttach, &c);
  Add(c.ctl_fd, Kind::kCtl, &c);
  if (!o.exec && c.oom.Watch(pid)) Add(c.oom.fd(), Kind::kOom, &c);
  if (o.timeout > 0) {
    c.timer_fd = Timer(o.timeout);
    Add(c.timer_fd, Kind::kTimer, &c);
  }
  if (auto it = unclaimed_.find(pid); it != unclaimed_.end()) {
    const int exit_status = it->second;
    unclaimed_.erase(it);
    OnExit(c, exit_status);
  }
}

void EventLoop::CloseStdin(Container& c) {
  if (c.stdio.in < 0) return;
  if (c.stdio.in != c.stdio.out) {
    Close(&c.stdio.in);
  } else {
    c.stdio.in = -1;
  }
}

void EventLoop::OnOutput(Container& c, int fd, bool drain_only) {
  char buf[kBuf + 1];
  const char pipe = fd == c.stdio.err ? kStderrPipe : kStdoutPipe;
  for (int rounds = 0; drain_only || rounds < 16; ++rounds) {
    const ssize_t n = ::read(fd, buf + 1, kBuf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {  // EOF, or EIO from a pty whose other side closed
      if (fd == c.stdio.err) {
        Close(&c.stdio.err);
      } else if (fd == c.stdio.out) {
        if (c.stdio.in == c.stdio.out) c.stdio.in = -1;
        Close(&c.stdio.out);
      }
      return;
    }
    c.log.Write(pipe == kStderrPipe ? Stream::kStderr : Stream::kStdout,
                std::string_view(buf + 1, static_cast<size_t>(n)));
    buf[0] = pipe;
    for (int client : c.clients) {
      (void)::send(client, buf, static_cast<size_t>(n) + 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
  }
}

void EventLoop::OnAttach(Container& c) {
  for (;;) {
    const int fd = ::accept4(c.attach_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    c.clients.push_back(fd);
    Add(fd, Kind::kClient, &c);
  }
}

void EventLoop::OnClient(Container& c, int fd) {
  char buf[kBuf];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) {
    if (c.stdio.in >= 0) WriteAll(c.stdio.in, buf, static_cast<size_t>(n));
    return;
  }
  std::erase(c.clients, fd);
  Close(&fd);
  // stdin_once: the first attached client's end is the container's end of input.
  if (!c.o.leave_stdin_open) CloseStdin(c);
}

void EventLoop::OnCtl(Container& c) {
  char buf[512];
  ssize_t n;
  while ((n = ::read(c.ctl_fd, buf, sizeof buf)) > 0) {
    c.ctl_pending.append(buf, static_cast<size_t>(n));
  }
  for (const CtlMessage& m : TakeCtlMessages(&c.ctl_pending)) {
    if (m.type == kCtlResize && c.o.terminal && c.stdio.out >= 0) {
      winsize ws{};
      ws.ws_row = static_cast<unsigned short>(m.height);
      ws.ws_col = static_cast<unsigned short>(m.width);
      ::ioctl(c.stdio.out, TIOCSWINSZ, &ws);
    } else if (m.type == kCtlReopenLog) {
      c.log.Reopen();
    }
  }
}

void EventLoop::MarkOom(Container& c) {
  if (c.oom_marked) return;
  c.oom_marked = true;
  for (const std::string& dir : {c.o.persist_dir, c.o.bundle}) {
    if (dir.empty()) continue;
    const int fd = ::open((dir + "/oom").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) ::close(fd);
  }
}

void EventLoop::OnTimeout(Container& c) {
  c.timed_out = true;
  const pid_t group = ::getpgid(c.pid);
  ::kill(group > 1 ? -group : c.pid, SIGKILL);
  // Wait for it to go, without draining its output.
  int status = 0;
  while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  OnExit(c, status);
}

// The container's process is gone: its output is drained, its exit recorded, and it is dropped.
void EventLoop::OnExit(Container& c, int status) {
  const Options& o = c.o;
  if (!c.timed_out) {
    // What the process wrote before it exited is still in the pipes; a child it left behind may
    // hold them open, so read what is there rather than waiting for EOF.
    for (int fd : {c.stdio.out, c.stdio.err}) {
      if (fd >= 0) OnOutput(c, fd, true);
    }
  }
  c.log.Flush();
  if (!o.exec && (c.oom.Check() || c.oom_marked)) MarkOom(c);
  CloseStdin(c);
  if (!o.no_sync_log) c.log.Sync();
  const int exit_status = c.timed_out ? -1 : ExitStatusOf(status);
  const std::string text = std::to_string(exit_status);
  if (!o.persist_dir.empty()) WriteFileAtomic(o.persist_dir + "/exit", text);
  if (!o.exit_dir.empty()) WriteFileAtomic(o.exit_dir + "/" + o.cid, text);
  if (o.exec) c.report.Send(c.SyncKey(), exit_status, c.timed_out ? "command timed out" : "");
  Drop(c);
}

// Reaps every child (we are a subreaper) and hands each to the container it was.
void EventLoop::Reap() {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    auto it = std::find_if(containers_.begin(), containers_.end(), [&](const auto& c) {
      return c->runtime_pid == pid || (c->runtime_pid < 0 && c->pid == pid);
    });
    if (it == containers_.end()) {
      if (unclaimed_.size() >= kMaxUnclaimed) unclaimed_.erase(unclaimed_.begin());
      unclaimed_[pid] = status;
    } else if ((*it)->runtime_pid == pid) {
      OnRuntimeExit(**it, status);
    } else {
      OnExit(**it, status);
    }
  }
  // A pid is only awaited while its runtime runs: an old status must not meet a reused pid.
  if (std::none_of(containers_.begin(), containers_.end(),
                   [](const auto& c) { return c->runtime_pid > 0; })) {
    unclaimed_.clear();
  }
}

void EventLoop::OnSignal() {
  signalfd_siginfo si;
  while (::read(signal_fd_, &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGCHLD) continue;
    for (const auto& c : containers_) {
      if (c->pid > 0) ::kill(c->pid, static_cast<int>(si.ssi_signo));
    }
  }
  Reap();
}

void EventLoop::OnAccept() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    // Only our own user (berthd, root) may have containers created: a request names the runtime.
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != ::geteuid()) {
      ::close(fd);
      continue;
    }
    served_ = true;
    requests_[fd];
    Add(fd, Kind::kRequest);
  }
}

void EventLoop::OnRequest(int fd) {
  std::string& data = requests_[fd];
  char buf[16384];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0 && data.size() <= kMaxPodRequest) {
    data.append(buf, static_cast<size_t>(n));
  }
  std::vector<std::string> args;
  const bool complete = DecodePodRequest(data, &args);
  if (!complete && n < 0 && (errno == EAGAIN || errno == EINTR) && data.size() <= kMaxPodRequest) {
    return;  // more to come
  }
  requests_.erase(fd);
  targets_.erase(fd);
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  changed_ = true;
  SyncPipe reply;
  reply.Reset(fd);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Options o;
  std::string bad = complete ? ParseOptions(static_cast<int>(args.size()), argv.data(), &o)
                             : "a request is a count and as many NUL-ended arguments";
  if (bad.empty() && (o.exec || !o.pod_socket.empty() || o.version || o.conmon_pidfile.empty())) {
    bad = "a pod monitor creates containers: --conmon-pidfile is required, --exec and "
          "--pod-monitor are not taken";
  }
  if (bad.empty() && !WriteFileAtomic(o.conmon_pidfile, std::to_string(::getpid()))) {
    bad = "write " + o.conmon_pidfile + ": " + std::strerror(errno);
  }
  if (!bad.empty()) {
    std::fprintf(stderr, "berth-conmon: %s\n", bad.c_str());
    reply.Send("pid", -1, bad);
    reply.Close();
    return;
  }
  Start(o, reply, /*close_report=*/true);
}

bool EventLoop::Done() const {
  if (!containers_.empty() || !requests_.empty()) return false;
  return listen_fd_ < 0 || served_ || idle_expired_;
}

void EventLoop::Run() {
  while (!Done()) {
    epoll_event events[16];
    const int n = ::epoll_wait(epoll_, events, 16, -1);
    if (n < 0 && errno != EINTR) break;
    changed_ = false;
    for (int i = 0; i < n && !changed_; ++i) {
      const int fd = events[i].data.fd;
      const auto it = targets_.find(fd);
      if (it == targets_.end()) continue;
      const Target target = it->second;
      Container* c = target.c;
      switch (target.kind) {
        case Kind::kSignal: OnSignal(); break;
        case Kind::kListen: OnAccept(); break;
        case Kind::kRequest: OnRequest(fd); break;
        case Kind::kIdle: idle_expired_ = true; Close(&idle_fd_); break;
        case Kind::kOutput: OnOutput(*c, fd, false); break;
        case Kind::kAttach: OnAttach(*c); break;
        case Kind::kClient: OnClient(*c, fd); break;
        case Kind::kCtl: OnCtl(*c); break;
        case Kind::kOom: if (c->oom.Check()) MarkOom(*c); break;
        case Kind::kTimer: OnTimeout(*c); break;
        case Kind::kConsole: OnConsole(*c); break;
      }
    }
  }
}

}  // namespace berth::conmon
