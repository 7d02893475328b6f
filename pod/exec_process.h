#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "pod/runtime.h"

namespace berth::pod {

// A process to run in a running container and wait for (ExecSync).
struct ExecSpec {
  std::string container_id;
  std::string process_json;  // the OCI "process" object
  std::string work_dir;      // private scratch directory: process spec, log, pid file
  std::chrono::seconds timeout{0};  // 0 = none
  // Bytes of output kept (a monitor counts its log records' headers too); more is read and
  // dropped, never held.
  size_t output_max = 16 << 20;
  // Set: berth-exec starts the process in the namespaces and cgroups of the container's process
  // `pid`, with linux.seccomp from `config_path` (the bundle's config.json), instead of the
  // runtime's exec. Same pid file and error log.
  std::string exec_helper;
  std::string config_path;
  pid_t pid = 0;
};

struct ExecResult {
  int exit_code = 0;
  std::string stdout_data;
  std::string stderr_data;
};

// A process started in a running container for an interactive session (CRI Exec): the OCI
// runtime's `exec` in the foreground, its stdio on pipes or, with a tty, on a pty whose master
// the runtime hands over on a console socket. The runtime's exit status is the process's.
// Owns the runtime process: the destructor kills and reaps it if it is still running.
class ExecProcess {
 public:
  // Starts `process_json` (an OCI process object) in container `id`. `work_dir` is a private
  // scratch directory (the process spec) that the ExecProcess removes when it is
  // destroyed. Internal with the runtime's message if it cannot start.
  static absl::StatusOr<std::unique_ptr<ExecProcess>> Start(const OciRuntime& runtime,
                                                            const std::string& id,
                                                            const std::string& process_json,
                                                            const std::string& work_dir,
                                                            bool tty, unsigned width = 0,
                                                            unsigned height = 0);
  ~ExecProcess();
  ExecProcess(const ExecProcess&) = delete;
  ExecProcess& operator=(const ExecProcess&) = delete;

  int stdin_fd() const { return stdin_.get(); }    // the pty master with a tty
  int stdout_fd() const { return stdout_.get(); }  // the pty master with a tty
  int stderr_fd() const { return stderr_.get(); }  // -1 with a tty
  void CloseStdin();
  void Resize(unsigned width, unsigned height);
  // Waits for the exit: the exit code (128 + signal if killed).
  int Wait();
  void Kill();

 private:
  ExecProcess() = default;
  pid_t pid_ = -1;
  bool tty_ = false;
  std::string work_dir_;
  UniqueFd stdin_, stdout_, stderr_;
};

// Runs `spec` to its end (CRI ExecSync) with no monitor process per call (exec probes are the most
// frequent fork on a node): the runtime's `exec --detach` (or berth-exec, ExecSpec::exec_helper)
// from the calling thread, after which the
// process is berthd's own child (the subreaper, base/reaper.h) to wait for. Stdin is /dev/null;
// output past `output_max` bytes is read and dropped. DeadlineExceeded past the timeout, with the
// process killed; Internal with the runtime's message if it could not start it (e.g. no such
// binary). Once the process has exited, what its pipes hold is taken and a child it left running
// with them open is not waited for. Makes the calling process the child subreaper.
absl::StatusOr<ExecResult> RunExecSync(const OciRuntime& runtime, const ExecSpec& spec);

}  // namespace berth::pod
