// berth-conmon: the monitor of one container (or one exec'd process). It starts the OCI runtime,
// holds the container's stdio for its whole life, writes the CRI log, serves the attach socket and
// the ctl fifo, notices OOM kills, and records the exit status in files berthd reads, so the
// container outlives berthd. It speaks upstream conmon's command line and sync-pipe protocol.
//
//   parse options -> wait for the start pipe -> daemonize (unless --sync) -> subreaper
//   -> runtime create/exec -> report {"pid": N} -> event loop until the container exits
//   -> drain output -> exit files (and {"exit_code": N} for exec) -> clean up

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/version.h"
#include "conmon/cri_log.h"
#include "conmon/event_loop.h"
#include "conmon/options.h"
#include "conmon/runtime_launch.h"
#include "conmon/sync_pipe.h"

namespace berth::conmon {
namespace {

// Fail() needs these from anywhere in main: the pipe to report on, and what to clean up.
SyncPipe g_sync;
std::string g_console_path;
int g_api_version = 0;
bool g_exec = false;

std::string SyncKey() {
  if (g_api_version >= 1) return "data";
  return g_exec ? "exit_code" : "pid";
}

void RemoveConsoleSocket() {
  if (g_console_path.empty()) return;
  ::unlink(g_console_path.c_str());
  ::rmdir(g_console_path.substr(0, g_console_path.rfind('/')).c_str());
  g_console_path.clear();
}

[[noreturn]] void Fail(const std::string& message) {
  RemoveConsoleSocket();
  std::fprintf(stderr, "berth-conmon: %s\n", message.c_str());
  g_sync.Send(SyncKey(), -1, message);
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

// Whatever the runtime printed before it failed: its message for the caller.
std::string ReadWhatIsThere(int fd) {
  if (fd < 0) return "";
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
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

}  // namespace

int Main(int argc, char** argv) {
  g_sync.Reset(SyncPipe::FdFromEnv("_OCI_SYNCPIPE"));
  Options o;
  if (std::string bad = ParseOptions(argc, argv, &o); !bad.empty()) Fail(bad);
  if (o.version) {
    std::printf("berth-conmon version %s\n", kVersion);
    return 0;
  }
  g_api_version = o.api_version;
  g_exec = o.exec;
  WaitStartPipe();
  Daemonize(o);
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) Fail(Errno("become subreaper"));
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int signal_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) Fail(Errno("signalfd"));

  CriLog log(o.log_path, o.log_size_max, o.log_global_size_max);
  if (int err = log.Open(); err != 0) {
    errno = err;
    Fail(Errno("open log " + o.log_path));
  }

  // stdio: pipes, or a pty the runtime hands over on the console socket.
  Stdio stdio;
  WorkerFds worker;
  int console_listen = -1;
  if (o.terminal) {
    console_listen = ListenConsoleSocket(&g_console_path);
    if (console_listen < 0) Fail(Errno("console socket"));
  } else if (int err = MakePipes(o.stdin, &stdio, &worker); err != 0) {
    errno = err;
    Fail(Errno("pipes"));
  }
  EventLoop loop(o, &log);
  if (!o.exec) {
    if (std::string bad = loop.SetUpControl(); !bad.empty()) Fail(bad);
  }

  const pid_t runtime_pid = SpawnRuntime(RuntimeArgv(o, g_console_path), worker);
  if (runtime_pid < 0) Fail(Errno("start " + o.runtime));
  for (int fd : {worker.in, worker.out, worker.err}) {
    if (fd >= 0) ::close(fd);
  }
  if (console_listen >= 0) {
    stdio.out = loop.AwaitConsole(console_listen, runtime_pid);
    ::close(console_listen);
    RemoveConsoleSocket();
    if (stdio.out >= 0 && o.stdin) stdio.in = ::dup(stdio.out);
  }
  int runtime_status = 0;
  if (!loop.RuntimeStatus(runtime_pid, &runtime_status)) {
    while (::waitpid(runtime_pid, &runtime_status, 0) < 0 && errno == EINTR) {
    }
  }
  const bool runtime_ok = WIFEXITED(runtime_status) && WEXITSTATUS(runtime_status) == 0;
  const pid_t container_pid = ReadPidFile(o.container_pidfile);
  if (!runtime_ok || container_pid <= 0) {
    std::string why = ReadWhatIsThere(stdio.err);
    if (why.empty()) why = ReadWhatIsThere(stdio.out);
    if (why.empty()) {
      why = runtime_ok ? "the runtime wrote no pid file" :
          "the runtime exited with status " + std::to_string(ExitStatusOf(runtime_status));
    }
    loop.RemoveControl();
    Fail(o.runtime + (o.exec ? " exec: " : " create: ") + why);
  }
  if (o.terminal && stdio.out < 0) Fail("the runtime did not set up the terminal");
  if (!o.exec || o.api_version >= 1) g_sync.Send(SyncKey(), container_pid);

  const EventLoop::Result result = loop.Run(container_pid, stdio, signal_fd);
  if (!o.no_sync_log) log.Sync();

  const int exit_status = result.timed_out ? -1 : ExitStatusOf(result.wait_status);
  const std::string text = std::to_string(exit_status);
  if (!o.persist_dir.empty()) WriteFileAtomic(o.persist_dir + "/exit", text);
  if (!o.exit_dir.empty()) WriteFileAtomic(o.exit_dir + "/" + o.cid, text);
  if (o.exec) g_sync.Send(SyncKey(), exit_status, result.timed_out ? "command timed out" : "");
  loop.RemoveControl();
  return 0;
}

}  // namespace berth::conmon

int main(int argc, char** argv) { return berth::conmon::Main(argc, argv); }
