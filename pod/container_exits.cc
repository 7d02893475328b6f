// Exits: recording them from the monitors' exit files, noticing monitors that died without one,
// and waiting for them.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "pod/container_manager.h"
#include "pod/monitor.h"

namespace berth::pod {

void ContainerManager::RecordExit(const std::string& id, bool monitor_gone) {
  const std::string exit_file = ExitFile(id);
  absl::StatusOr<std::string> text = ReadFile(exit_file);
  int code = 0;
  const bool have_code =
      text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &code);
  if (!have_code && !monitor_gone) return;  // not (completely) written yet
  const bool oom = ::access((MonitorDir(id) + "/oom").c_str(), F_OK) == 0;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = starting_.find(id); it != starting_.end()) {
      // A Start in flight records RUNNING first, then this exit: not waited for here, so that
      // the watcher never blocks behind a runtime call.
      it->second = it->second.value_or(false) || monitor_gone;
      return;
    }
  }
  int64_t finished = absl::ToUnixNanos(clock_.Now());
  struct stat st;
  if (have_code && ::stat(exit_file.c_str(), &st) == 0) {
    finished = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  bool recorded = false;  // now, not before
  absl::Status s = UpdateStatus(id, [&](Container& c) {
    if (c.state == Container::State::kExited) return false;
    recorded = true;
    c.state = Container::State::kExited;
    c.finished_at_ns = finished;
    if (have_code) {
      c.exit_code = code;
      c.reason = oom ? "OOMKilled" : code == 0 ? "Completed" : "Error";
    } else {
      c.exit_code = 255;
      c.reason = "Error";
      c.message = "the container's monitor exited without recording an exit code";
    }
    return true;
  });
  if (!s.ok() && !absl::IsNotFound(s)) spdlog::error("container {}: record exit: {}", id, s.message());
  if (s.ok() && recorded && options_.on_exit) {
    if (absl::StatusOr<ContainerPtr> c = Get(id); c.ok()) {
      absl::StatusOr<SandboxPtr> sandbox = sandboxes_->Get((*c)->sandbox_id);
      options_.on_exit(**c, sandbox.ok() ? sandbox->get() : nullptr);
    }
  }
  // Not without an exit code: the monitor is gone, but the container may still run.
  if (s.ok() && have_code) DeleteFromRuntime(id);
}

void ContainerManager::DeleteFromRuntime(const std::string& id) {
  (void)deletes_.Submit([this, id] {
    std::shared_ptr<absl::Mutex> op = op_locks_.Get(id);
    absl::MutexLock op_lock(op.get());
    absl::StatusOr<ContainerPtr> c = Get(id);
    if (!c.ok()) {
      op_locks_.Erase(id);  // removed already: no lock is left behind for it
      return;
    }
    if ((*c)->state != Container::State::kExited) return;
    std::unique_ptr<OciRuntime> runtime = RuntimeFor((*c)->runtime_handler);
    if (runtime == nullptr) return;  // Remove reports it
    if (absl::Status deleted = runtime->Delete(id, /*force=*/false); !deleted.ok()) {
      spdlog::warn("container {}: delete from the runtime after its exit: {}", id,
                   deleted.message());  // Remove tries again
    }
  });
}

bool ContainerManager::WaitExited(const std::string& id, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto exited = [this, &id]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto it = containers_.find(id);
    return it == containers_.end() || it->second->state == Container::State::kExited;
  };
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    // The watcher records the exit the moment inotify reports the exit file; the slices are
    // for a host where inotify could not be set up.
    const auto slice = std::min<std::chrono::nanoseconds>(left, std::chrono::seconds(1));
    {
      absl::ReaderMutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&exited), absl::FromChrono(slice))) return true;
    }
    if (::access(ExitFile(id).c_str(), F_OK) == 0) RecordExit(id, false);
    if (std::chrono::steady_clock::now() >= deadline) {
      absl::ReaderMutexLock lock(&mu_);
      return exited();
    }
  }
}

void ContainerManager::CheckMonitors() {
  std::vector<ContainerPtr> live;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [id, c] : containers_) {
      if (c->state == Container::State::kRunning || c->state == Container::State::kCreated) {
        live.push_back(c);
      }
    }
  }
  for (const ContainerPtr& c : live) {
    if (::access(ExitFile(c->id).c_str(), F_OK) == 0) {
      RecordExit(c->id, false);
    } else if (c->monitor_pid > 0 && !MonitorAlive(c->monitor_pid, c->id, c->sandbox_id)) {
      // The exit file may land just after the monitor's pid is gone: look once more.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      RecordExit(c->id, ::access(ExitFile(c->id).c_str(), F_OK) != 0);
    }
  }
}

void ContainerManager::OnExitFile(const std::string& name) {
  bool known;
  {
    absl::ReaderMutexLock lock(&mu_);
    known = containers_.contains(name);
  }
  if (known) {
    RecordExit(name, false);
  } else {
    sandboxes_->OnPauseExit(name);  // the pause's monitor writes there too
  }
}

}  // namespace berth::pod
