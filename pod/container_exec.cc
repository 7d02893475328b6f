// Exec, attach and log reopening in running containers.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "pod/container_manager.h"
#include "pod/container_spec.h"
#include "pod/exec_process.h"
#include "pod/runtime.h"

namespace berth::pod {

absl::Status ContainerManager::ReopenLog(const std::string& id) {
  ASSIGN_OR_RETURN(ContainerPtr c, Get(id));
  if (c->state != Container::State::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not running"));
  }
  const std::string ctl = ContainerDir(c->id) + "/ctl";
  // O_NONBLOCK: a monitor that is gone must not hang us on the fifo.
  UniqueFd fd(::open(ctl.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", ctl));
  const char kReopen[] = "2 0 0\n";
  if (::write(fd.get(), kReopen, sizeof kReopen - 1) != sizeof kReopen - 1) {
    return ErrnoToStatus(errno, absl::StrCat("write ", ctl));
  }
  // The monitor reopens asynchronously; kubelet checks for the new file right after.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (::access(c->log_path.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExecResult> ContainerManager::ExecSync(const std::string& id,
                                                      const std::vector<std::string>& cmd,
                                                      std::chrono::seconds timeout) {
  ASSIGN_OR_RETURN(ContainerPtr c, Get(id));
  if (c->state != Container::State::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not running"));
  }
  ASSIGN_OR_RETURN(const std::string spec, OciSpec(*c));
  ASSIGN_OR_RETURN(std::string process, ExecProcessSpec(spec, cmd, /*tty=*/false));
  std::unique_ptr<OciRuntime> runtime = RuntimeFor(c->runtime_handler);
  if (runtime == nullptr) return absl::FailedPreconditionError("runtime handler is not configured");
  auto config = config_();
  ASSIGN_OR_RETURN(std::string work, MakeTempDirIn(config->run_root + "/exec", "exec-"));
  absl::Cleanup remove_work = [&] {
    std::error_code ec;
    std::filesystem::remove_all(work, ec);
  };
  // No monitor: the runtime (or berth-exec) from this thread (a killed berthd leaves the process to
  // the orphan sweep, which ends it).
  // berth gives no container a user namespace (berth-exec would refuse to join one).
  const bool helper = config->monitor.exec_sync == "berth" && !options_.exec_path.empty();
  absl::StatusOr<ExecResult> result = RunExecSync(
      *runtime,
      {.container_id = c->id,
       .process_json = process,
       .work_dir = work,
       .timeout = timeout,
       .output_max = static_cast<size_t>(config->monitor.exec_sync_output_max),
       .exec_helper = helper ? options_.exec_path : "",
       .config_path = ContainerDir(c->id) + "/config.json",
       .pid = c->pid});
  // A probe racing the container's exit gets the runtime's many ways of saying so ("cannot exec
  // in a stopped container", a namespace that is gone, a broken pipe): say it once, plainly.
  if (absl::IsInternal(result.status()) &&
      (::access(ExitFile(c->id).c_str(), F_OK) == 0 || ::kill(c->pid, 0) != 0)) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", c->id, " is not running (it exited as the command started)"));
  }
  return result;
}

absl::StatusOr<std::unique_ptr<ExecProcess>> ContainerManager::StartExec(
    const std::string& id, const std::vector<std::string>& cmd, bool tty, unsigned width,
    unsigned height) {
  ASSIGN_OR_RETURN(ContainerPtr c, Get(id));
  if (c->state != Container::State::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not running"));
  }
  ASSIGN_OR_RETURN(const std::string spec, OciSpec(*c));
  ASSIGN_OR_RETURN(std::string process, ExecProcessSpec(spec, cmd, tty));
  std::unique_ptr<OciRuntime> runtime = RuntimeFor(c->runtime_handler);
  if (runtime == nullptr) return absl::FailedPreconditionError("runtime handler is not configured");
  ASSIGN_OR_RETURN(std::string work, MakeTempDirIn(config_()->run_root + "/exec", "session-"));
  absl::StatusOr<std::unique_ptr<ExecProcess>> p =
      ExecProcess::Start(*runtime, c->id, process, work, tty, width, height);
  if (!p.ok()) {
    std::error_code ec;
    std::filesystem::remove_all(work, ec);
  }
  return p;
}

absl::StatusOr<std::pair<std::string, std::string>> ContainerManager::AttachPaths(
    const std::string& id) const {
  ASSIGN_OR_RETURN(ContainerPtr c, Get(id));
  if (c->state != Container::State::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not running"));
  }
  return std::make_pair(absl::StrCat(config_()->run_root, "/socks/", c->id, "/attach"),
                        ContainerDir(c->id) + "/ctl");
}

}  // namespace berth::pod
