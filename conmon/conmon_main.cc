// berth-conmon: the monitor of a container (or of one exec'd process), or of all of a pod's
// containers. It starts the OCI runtime, holds each container's stdio for its whole life, writes
// the CRI log, serves the attach socket and the ctl fifo, notices OOM kills, and records the exit
// status in files berthd reads, so the containers outlive berthd. It speaks upstream conmon's
// command line and sync-pipe protocol.
//
//   parse options -> wait for the start pipe -> daemonize (unless --sync) -> subreaper
//   -> one container: runtime create/exec -> report {"pid": N} -> event loop until it exits
//      -> drain output -> exit files (and {"exit_code": N} for exec) -> clean up
//   -> a pod (--pod-monitor): listen -> report our pid -> event loop: each client's request is a
//      container's conmon command line, answered as above -> exit once the last container is gone

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/version.h"
#include "conmon/event_loop.h"
#include "conmon/options.h"
#include "conmon/runtime_launch.h"
#include "conmon/sync_pipe.h"

namespace berth::conmon {
namespace {

// Fail() needs it from anywhere in main: the pipe to report on.
SyncPipe g_sync;
const char* g_sync_key = "pid";

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "berth-conmon: %s\n", message.c_str());
  g_sync.Send(g_sync_key, -1, message);
  _exit(1);
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

void WaitStartPipe() {
  const int fd = SyncPipe::FdFromEnv("_OCI_STARTPIPE");
  if (fd < 0) return;
  char byte;
  ssize_t n;
  do {
    n = ::read(fd, &byte, 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
}

void Daemonize(const Options& o) {
  if (!o.sync) {
    const pid_t pid = ::fork();
    if (pid < 0) Fail(Errno("fork"));
    if (pid > 0) _exit(0);
    ::setsid();
  }
  if (!o.conmon_pidfile.empty() && !WriteFileAtomic(o.conmon_pidfile, std::to_string(getpid()))) {
    Fail(Errno("write " + o.conmon_pidfile));
  }
}

int SignalFd() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) Fail(Errno("become subreaper"));
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int signal_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) Fail(Errno("signalfd"));
  return signal_fd;
}

int PodMain(const Options& o) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (o.pod_socket.size() >= sizeof addr.sun_path) Fail("socket path too long: " + o.pod_socket);
  std::strncpy(addr.sun_path, o.pod_socket.c_str(), sizeof addr.sun_path - 1);
  Daemonize(o);
  const int signal_fd = SignalFd();
  const int listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) Fail(Errno("socket"));
  // berthd starts a pod monitor only when none answers there: what is left is a dead one's.
  ::unlink(o.pod_socket.c_str());
  struct stat bound{};
  if (::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(o.pod_socket.c_str(), 0600) != 0 || ::listen(listen_fd, 128) != 0 ||
      ::stat(o.pod_socket.c_str(), &bound) != 0) {
    Fail(Errno("listen on " + o.pod_socket));
  }
  g_sync.Send("pid", ::getpid());
  g_sync.Close();
  {
    EventLoop loop(signal_fd);
    // berthd asks at once; one killed between starting the monitor and asking leaves it
    // waiting for nothing, for this long.
    loop.Serve(listen_fd, o.pod_idle_timeout);
    loop.Run();
    // Gone from the path before the socket closes: a client then starts the next monitor.
    struct stat now{};
    if (::stat(o.pod_socket.c_str(), &now) == 0 && now.st_ino == bound.st_ino) {
      ::unlink(o.pod_socket.c_str());
    }
    if (!o.conmon_pidfile.empty()) ::unlink(o.conmon_pidfile.c_str());
  }
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  g_sync.Reset(SyncPipe::FdFromEnv("_OCI_SYNCPIPE"));
  Options o;
  if (std::string bad = ParseOptions(argc, argv, &o); !bad.empty()) Fail(bad);
  if (o.version) {
    std::printf("berth-conmon version %s\n", kVersion);
    return 0;
  }
  if (o.api_version >= 1) {
    g_sync_key = "data";
  } else if (o.exec) {
    g_sync_key = "exit_code";
  }
  WaitStartPipe();
  if (!o.pod_socket.empty()) return PodMain(o);
  Daemonize(o);
  EventLoop loop(SignalFd());
  loop.Start(o, g_sync, /*close_report=*/false);
  loop.Run();
  return loop.create_failed() ? 1 : 0;
}

}  // namespace berth::conmon

int main(int argc, char** argv) { return berth::conmon::Main(argc, argv); }
