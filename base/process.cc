#include "base/process.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/reaper.h"
#include "base/unique_fd.h"

namespace berth {
namespace {

struct Pipe {
  UniqueFd read, write;
};

absl::StatusOr<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

ssize_t WriteNoSigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  const ssize_t n = ::write(fd, data, size);
  const int saved = errno;
  if (n < 0 && errno == EPIPE) {
    const timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = saved;
  return n;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

absl::StatusOr<pid_t> SpawnProcess(const SpawnSpec& spec) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("no command");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!spec.terminal.empty()) {
    // After setsid (an attribute, applied before the file actions) the first terminal opened
    // becomes the controlling one.
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, spec.terminal.c_str(), O_RDWR, 0);
    posix_spawn_file_actions_adddup2(&actions, STDIN_FILENO, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, STDIN_FILENO, STDERR_FILENO);
  } else {
    const int fds[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
    for (int target = 0; target < 3; ++target) {
      if (fds[target] >= 0) {
        posix_spawn_file_actions_adddup2(&actions, fds[target], target);  // clears FD_CLOEXEC
      } else {
        posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_RDWR, 0);
      }
    }
  }
  int highest = STDERR_FILENO;
  for (const auto& [from, to] : spec.extra_fds) {
    posix_spawn_file_actions_adddup2(&actions, from, to);
    highest = std::max(highest, to);
  }
  // Nothing else: a library's descriptor without O_CLOEXEC (or berthd's sockets, for a monitor
  // that outlives it) must not reach the child.
  posix_spawn_file_actions_addclosefrom_np(&actions, highest + 1);
  if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, spec.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);  // the daemon blocks signals; its children must not
  posix_spawnattr_setsigdefault(&attr, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_USEVFORK;
  if (spec.new_session || !spec.terminal.empty()) {
    flags |= POSIX_SPAWN_SETSID;
  } else {
    posix_spawnattr_setpgroup(&attr, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&attr, flags);
  std::vector<char*> argv = CStrings(spec.argv);
  std::vector<char*> envp = CStrings(spec.env);
  pid_t pid = -1;
  int rc = 0;
  std::unique_lock children = internal::LockChildren();
  if (spec.nice > 0) {
    // posix_spawn has no attribute for it, and a nice value is a thread's own on Linux: the
    // child inherits it from the thread that spawns it, one that lives for just that.
    std::thread([&] {
      errno = 0;
      const int current = ::getpriority(PRIO_PROCESS, ::gettid());
      if (errno == 0) ::setpriority(PRIO_PROCESS, ::gettid(), std::min(19, current + spec.nice));
      rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    }).join();
  } else {
    rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  }
  if (rc == 0) internal::RecordSpawned(pid);
  children.unlock();
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return ErrnoToStatus(rc, absl::StrCat("start ", spec.argv[0]));
  return pid;
}

absl::StatusOr<ProcessResult> RunProcess(const ProcessSpec& spec) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("no command");
  auto in = MakePipe();
  auto out = MakePipe();
  auto err = MakePipe();
  if (!in.ok() || !out.ok() || !err.ok()) return absl::InternalError("pipes for a helper");
  absl::StatusOr<pid_t> pid = SpawnProcess({.argv = spec.argv,
                                             .env = spec.env,
                                             .stdin_fd = in->read.get(),
                                             .stdout_fd = out->write.get(),
                                             .stderr_fd = err->write.get(),
                                             .nice = spec.nice});
  in->read.Reset();
  out->write.Reset();
  err->write.Reset();
  if (!pid.ok()) return pid.status();
  ::fcntl(in->write.get(), F_SETFL, O_NONBLOCK);

  ProcessResult result;
  size_t stdin_done = 0;
  if (spec.stdin_data.empty()) in->write.Reset();
  const auto deadline = std::chrono::steady_clock::now() + spec.timeout;
  bool timed_out = false;
  char buf[65536];
  while (out->read.valid() || err->read.valid()) {
    pollfd fds[3] = {{out->read.get(), POLLIN, 0},
                     {err->read.get(), POLLIN, 0},
                     {in->write.get(), POLLOUT, 0}};
    int wait_ms = -1;
    if (spec.timeout.count() > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(left.count());
    }
    if (::poll(fds, 3, wait_ms) < 0 && errno != EINTR) break;
    if (fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
      const ssize_t n = WriteNoSigpipe(in->write.get(), spec.stdin_data.data() + stdin_done,
                                       spec.stdin_data.size() - stdin_done);
      if (n > 0) stdin_done += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) stdin_done = spec.stdin_data.size();
      if (stdin_done == spec.stdin_data.size()) in->write.Reset();
    }
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      UniqueFd& fd = i == 0 ? out->read : err->read;
      std::string& sink = i == 0 ? result.stdout_data : result.stderr_data;
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        fd.Reset();
        continue;
      }
      if (sink.size() < spec.output_limit) {
        sink.append(buf, std::min(static_cast<size_t>(n), spec.output_limit - sink.size()));
      }
    }
  }
  if (timed_out) ::kill(-*pid, SIGKILL);
  const int status = ReapChild(*pid);
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        spec.argv[0], " did not finish within ", spec.timeout.count(), " ms", 
        result.stderr_data.empty() ? "" : "; stderr: ", Tail(result.stderr_data)));
  }
  result.exit_code = DecodeWaitStatus(status);
  return result;
}

std::string Tail(const std::string& text, size_t max_bytes) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t.size() <= max_bytes ? t : "..." + t.substr(t.size() - max_bytes);
}

}  // namespace berth
