#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "pod/runtime.h"

namespace berth::pod {

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

}  // namespace berth::pod
