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
};

struct ProcessResult {
  int exit_code = -1;  // the exit status, or 128 + signal
  std::string stdout_data;
  std::string stderr_data;
};

// Runs a helper (CNI plugin, OCI runtime) to completion with posix_spawn (never fork() of the
// multi-threaded daemon), in its own process group, with only stdin/stdout/stderr open. Internal if
// it cannot be started; DeadlineExceeded (with the output so far) if it outlives the timeout, in
// which case its whole process group has been killed and reaped. Thread-safe.
absl::StatusOr<ProcessResult> RunProcess(const ProcessSpec& spec);

// The last `max_bytes` of `text`, for error messages quoting a tool's stderr.
std::string Tail(const std::string& text, size_t max_bytes = 2048);

}  // namespace berth
