#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::testing {

struct CommandResult {
  int exit_code = -1;  // the exit status, or 128 + signal
  std::string output;  // stdout and stderr, interleaved
};

// Runs a command to completion (posix_spawnp; `env` entries "K=V" are added to the environment),
// killing it after `timeout`. DeadlineExceeded on timeout.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env = {},
                                         std::chrono::seconds timeout = std::chrono::seconds(60));

// Starts a command in the background with stdout and stderr appended to `log_path` (`env` entries
// "K=V" are added to the environment; `fd3`, if given, is its descriptor 3). Returns pid.
absl::StatusOr<pid_t> SpawnWithLog(const std::vector<std::string>& argv,
                                   const std::string& log_path,
                                   const std::vector<std::string>& env = {}, int fd3 = -1);

// Waits for `pid` up to `timeout`: its exit code (128 + signal if killed). DeadlineExceeded if it
// is still running.
absl::StatusOr<int> WaitFor(pid_t pid, std::chrono::milliseconds timeout);

// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
int FreeTcpPort();

// A number of /proc/<pid>/status: `field` "VmRSS" (kB), "Threads", ...; 0 if the process or the
// field is not there.
long ProcStatusField(pid_t pid, const std::string& field);

}  // namespace berth::testing
