#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace berth {

struct ProcessSpec {
  std::vector<std::string> argv;        // argv[0] is an absolute path
  std::vector<std::string> env;         // the whole environment ("K=V"); not inherited
  std::string stdin_data;               // written to the child's stdin, then closed
  std::chrono::milliseconds timeout{0};  // 0 = none; on expiry the process group is killed
  size_t output_limit = 16 << 20;       // bytes kept of stdout and of stderr each
  int nice = 0;  // how much lower the helper's CPU priority is than berthd's (SpawnSpec::nice)
};

struct ProcessResult {
  int exit_code = -1;  // the exit status, or 128 + signal
  std::string stdout_data;
  std::string stderr_data;
};

// The nice of the short-lived helpers berthd waits for (OCI runtime commands, CNI plugins): on a
// busy node (a drain tears down dozens of pods at once) kubelet's reads, answered by berthd's own
// threads from memory, come first. Relative to berthd's cgroup only: pods are not affected.
inline constexpr int kHelperNice = 10;

// Runs a helper (CNI plugin, OCI runtime) to completion with posix_spawn (never fork() of the
// multi-threaded daemon), in its own process group, with only stdin/stdout/stderr open. Internal if
// it cannot be started; DeadlineExceeded (with the output so far) if it outlives the timeout, in
// which case its whole process group has been killed and reaped. Thread-safe.
absl::StatusOr<ProcessResult> RunProcess(const ProcessSpec& spec);

// How to start a process that outlives the call (a monitor, an interactive exec).
struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] is an absolute path
  std::vector<std::string> env;   // the whole environment; not inherited
  int stdin_fd = -1;              // -1: /dev/null
  int stdout_fd = -1;
  int stderr_fd = -1;
  std::string terminal;  // if set: this pty slave becomes stdin, stdout, stderr and the
                         // controlling terminal (implies new_session)
  std::vector<std::pair<int, int>> extra_fds;  // dup2(first, second), e.g. a sync pipe to fd 3
  bool new_session = false;  // setsid; otherwise its own process group
  std::string cwd;           // its working directory ("" = berthd's)
  // Added to the child's nice value (0..19): a helper that may compete for the CPU with the
  // daemon's answers to its clients runs below them. Everything the child starts inherits it, so
  // never for a process that starts a container's processes.
  int nice = 0;
};

// posix_spawn with only the given descriptors open and default signal handling. Returns the
// pid (the caller reaps it); Internal naming the program if it cannot start. Thread-safe.
absl::StatusOr<pid_t> SpawnProcess(const SpawnSpec& spec);

// write(2) to a pipe whose reader may be gone (a helper that exits without reading its stdin):
// EPIPE instead of a SIGPIPE that would kill a process that did not ignore it. SIGPIPE is blocked
// in this thread for the call and a pending one is consumed.
ssize_t WriteNoSigpipe(int fd, const char* data, size_t size);

// A waitpid() status as an exit code: the exit status, or 128 + the signal that killed it.
int DecodeWaitStatus(int status);

// The last `max_bytes` of `text`, for error messages quoting a tool's stderr.
std::string Tail(const std::string& text, size_t max_bytes = 2048);

}  // namespace berth
