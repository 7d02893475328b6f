// Start, stop, remove and update containers.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <system_error>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/failpoint.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/process.h"
#include "base/status_macros.h"
#include "base/steps.h"
#include "base/unique_fd.h"
#include "image/rootfs.h"
#include "nlohmann/json.hpp"
#include "pod/cgroup_support.h"
#include "pod/container_manager.h"
#include "pod/container_spec.h"
#include "pod/resources.h"
#include "pod/runtime.h"

namespace berth::pod {
namespace {

// "SIGTERM", "TERM", "15" -> 15; unknown names fall back to SIGTERM.
int SignalNumber(const std::string& name) {
  if (name.empty()) return SIGTERM;
  int number = 0;
  if (absl::SimpleAtoi(name, &number) && number > 0 && number < 65) return number;
  std::string upper = absl::AsciiStrToUpper(name);
  if (!absl::StartsWith(upper, "SIG")) upper = "SIG" + upper;
  static const std::pair<const char*, int> kSignals[] = {
      {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT}, {"SIGKILL", SIGKILL},
      {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGTERM", SIGTERM}, {"SIGSTOP", SIGSTOP},
      {"SIGWINCH", SIGWINCH}, {"SIGPWR", SIGPWR}, {"SIGRTMIN+3", SIGRTMIN + 3}};
  for (const auto& [n, v] : kSignals) {
    if (upper == n) return v;
  }
  return SIGTERM;
}

}  // namespace

absl::Status ContainerManager::Start(const std::string& id) {
  StepTimer steps("StartContainer");
  WarmCgroupAttach();
  ASSIGN_OR_RETURN(ContainerPtr found, Get(id));
  // As at create: shared with other starts and creates, exclusive with StopPodSandbox, so that
  // no container of a pod that is stopping gets a process.
  std::shared_ptr<absl::Mutex> sandbox_op = sandboxes_->OperationLock(found->sandbox_id);
  absl::ReaderMutexLock sandbox_lock(sandbox_op.get());
  std::shared_ptr<absl::Mutex> op = op_locks_.Get(found->id);
  absl::MutexLock op_lock(op.get());
  ASSIGN_OR_RETURN(ContainerPtr c, Get(found->id));
  if (c->state != Container::State::kCreated) {
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not in the "
                                                      "created state"));
  }
  std::unique_ptr<OciRuntime> runtime = RuntimeFor(c->runtime_handler);
  if (runtime == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("runtime handler \"", c->runtime_handler, "\" is no longer configured"));
  }
  {
    absl::MutexLock lock(&mu_);
    starting_[c->id] = std::nullopt;
  }
  absl::Status started = Failpoint("container.start.begin");
  // The runtime makes it now (unless a start that berthd did not see through made it already),
  // and starts it with it where the monitor can have it do so.
  bool running = false;
  if (started.ok() && !c->InRuntime()) {
    absl::StatusOr<bool> made = CreateInRuntime(*c, runtime.get(), steps);
    started = made.status();
    running = made.value_or(false);
  }
  if (started.ok() && !running) started = runtime->Start(c->id);
  if (started.ok()) started = Failpoint("container.start.runtime_started");
  steps.Step("runtime_start");
  // The start failed, so the container is recorded exited: its process, running or still
  // waiting in the runtime's init for the start, must not go on unaccounted for.
  if (!started.ok()) (void)runtime->Kill(c->id, SIGKILL, /*all=*/true);
  absl::Status recorded;
  if (!started.ok()) {
    recorded = ExitWithoutMonitor(c->id, 128, "ContainerCannotRun", std::string(started.message()));
  } else {
    const int64_t now = absl::ToUnixNanos(clock_.Now());
    recorded = UpdateStatus(c->id, [&](Container& next) {
      if (next.state != Container::State::kCreated) return false;  // it exited already
      next.state = Container::State::kRunning;
      next.started_at_ns = now;
      return true;
    });
  }
  // An exit the watcher noticed meanwhile is recorded now, after RUNNING.
  std::optional<bool> exited;
  {
    absl::MutexLock lock(&mu_);
    exited = starting_[c->id];
    starting_.erase(c->id);
  }
  if (exited) RecordExit(c->id, *exited);
  steps.Step("persist");
  if (!started.ok()) return Annotate(started, absl::StrCat("start container ", c->id));
  return recorded;
}

absl::Status ContainerManager::Stop(const std::string& id, std::chrono::seconds timeout) {
  absl::StatusOr<ContainerPtr> found = Get(id);
  if (absl::IsNotFound(found.status())) return absl::OkStatus();
  RETURN_IF_ERROR(found.status());
  std::shared_ptr<absl::Mutex> op = op_locks_.Get((*found)->id);
  absl::MutexLock op_lock(op.get());
  absl::StatusOr<ContainerPtr> c = Get((*found)->id);
  if (!c.ok() || (*c)->state == Container::State::kExited) return absl::OkStatus();
  const std::string full_id = (*c)->id;
  if (!(*c)->InRuntime()) {
    // Created, never started: the runtime has no process of it, there is nothing to signal.
    // Recorded as the runtime's kill of a created container would have ended (cri-o's).
    return ExitWithoutMonitor(full_id, 128 + SIGKILL, "Error", "stopped before it was started");
  }
  std::unique_ptr<OciRuntime> runtime = RuntimeFor((*c)->runtime_handler);
  if (runtime == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("runtime handler \"", (*c)->runtime_handler, "\" is no longer configured"));
  }
  if (timeout.count() > 0 && (*c)->state == Container::State::kRunning) {
    const int signal = SignalNumber((*c)->stop_signal);
    absl::Status sent = runtime->Kill(full_id, signal, false);
    if (!sent.ok() && !absl::IsNotFound(sent)) {
      spdlog::warn("container {}: signal {}: {}", full_id, signal, sent.message());
    }
    if (WaitExited(full_id, timeout)) return absl::OkStatus();
    spdlog::info("container {} did not stop within {}s, killing it", full_id, timeout.count());
  }
  absl::Status killed = runtime->Kill(full_id, SIGKILL, /*all=*/true);
  if (!killed.ok() && !absl::IsNotFound(killed)) {
    spdlog::warn("container {}: SIGKILL: {}", full_id, killed.message());
  }
  if (WaitExited(full_id, std::chrono::seconds(30))) return absl::OkStatus();
  // The monitor is gone or stuck: record what we know rather than hang kubelet.
  if (!MonitorAlive((*c)->monitor_pid, full_id, (*c)->sandbox_id)) {
    RecordExit(full_id, /*monitor_gone=*/true);
    return absl::OkStatus();
  }
  return absl::DeadlineExceededError(
      absl::StrCat("stop container ", full_id, ": no exit after SIGKILL"));
}

absl::Status ContainerManager::Remove(const std::string& id) {
  absl::StatusOr<ContainerPtr> found = Get(id);
  if (absl::IsNotFound(found.status())) return absl::OkStatus();
  RETURN_IF_ERROR(found.status());
  const std::string full_id = (*found)->id;
  if ((*found)->state != Container::State::kExited) {
    RETURN_IF_ERROR(Stop(full_id, std::chrono::seconds(0)));
  }
  std::shared_ptr<absl::Mutex> op = op_locks_.Get(full_id);
  absl::MutexLock op_lock(op.get());
  absl::StatusOr<ContainerPtr> c = Get(full_id);
  if (!c.ok()) return absl::OkStatus();  // removed meanwhile
  const std::string what = absl::StrCat("remove container ", full_id);
  RETURN_IF_ERROR(Annotate(Teardown(**c), what));
  const std::string key = KeyOf(**c);
  RETURN_IF_ERROR(Annotate(store_.Delete(full_id), what));
  std::unique_ptr<image::ImageStore::Lease> lease;  // released outside our lock
  {
    absl::MutexLock lock(&mu_);
    containers_.erase(full_id);
    if (auto it = leases_.find(full_id); it != leases_.end()) {
      lease = std::move(it->second);
      leases_.erase(it);
    }
  }
  names_.Erase(key, full_id);
  op_locks_.Erase(full_id);
  lease.reset();
  Publish(**c, ContainerEventType::kDeleted);
  spdlog::info("container {} removed", full_id);
  return absl::OkStatus();
}

absl::Status ContainerManager::EachIn(const std::string& sandbox_id,
                                      const std::function<absl::Status(const std::string&)>& fn) {
  std::vector<std::string> ids;
  for (const ContainerPtr& c : List()) {
    if (c->sandbox_id == sandbox_id) ids.push_back(c->id);
  }
  std::vector<absl::Status> done(ids.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto one = [&ids, &done, &fn, i] { done[i] = fn(ids[i]); };
    try {
      threads.emplace_back(one);
    } catch (const std::system_error&) {
      one();  // no thread to be had: this one here
    }
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : done) RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

absl::Status ContainerManager::StopAllIn(const std::string& sandbox_id) {
  // All at once: a pod's containers are killed together, not one after another.
  return EachIn(sandbox_id,
                [this](const std::string& id) { return Stop(id, std::chrono::seconds(0)); });
}

absl::Status ContainerManager::RemoveAllIn(const std::string& sandbox_id) {
  // Their runtime deletes and unmounts are independent: all at once too.
  return EachIn(sandbox_id, [this](const std::string& id) { return Remove(id); });
}

absl::Status ContainerManager::ExitWithoutMonitor(const std::string& id, int32_t exit_code,
                                                  const std::string& reason,
                                                  const std::string& message) {
  const int64_t now = absl::ToUnixNanos(clock_.Now());
  return UpdateStatus(id, [&](Container& next) {
    if (next.state == Container::State::kExited) return false;
    next.state = Container::State::kExited;
    next.finished_at_ns = now;
    next.exit_code = exit_code;
    next.reason = reason;
    next.message = message;
    return true;
  });
}

absl::Status ContainerManager::UpdateSpecResources(const std::string& id,
                                                   const nlohmann::json& resources) {
  const std::string path = ContainerDir(id) + "/config.json";
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  nlohmann::json spec = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!spec.is_object()) return absl::InternalError(absl::StrCat(path, " is not a JSON object"));
  // Objects merge key by key (cgroup v2's unified map too), like runc update's.
  spec["linux"]["resources"].merge_patch(resources);
  return WriteFileAtomic(path, spec.dump(), 0600, Durability::kVolatile);
}

absl::Status ContainerManager::UpdateResources(const std::string& id,
                                               const ResourcesSpec& resources) {
  ASSIGN_OR_RETURN(ContainerPtr found, Get(id));
  // Not while a stop, start or removal of the container is under way.
  std::shared_ptr<absl::Mutex> op = op_locks_.Get(found->id);
  absl::MutexLock op_lock(op.get());
  ASSIGN_OR_RETURN(ContainerPtr c, Get(found->id));
  if (c->state != Container::State::kRunning && c->state != Container::State::kCreated) {
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not running"));
  }
  ASSIGN_OR_RETURN(SandboxPtr sandbox, sandboxes_->Get(c->sandbox_id));
  const std::string who = absl::StrCat("container ", c->id);
  // The whole merged set goes to the runtime, so that memory and memory+swap move together.
  const ResourcesSpec merged = MergeResourceUpdate(c->spec.resources, resources);
  // runc update takes the OCI resources object (on cgroup v1 too), filtered like at create.
  const nlohmann::json applied = OciResources(merged, sandboxes_->CgroupsFor(*sandbox), who);
  std::unique_ptr<OciRuntime> runtime = RuntimeFor(c->runtime_handler);
  if (runtime == nullptr) return absl::FailedPreconditionError("runtime handler is not configured");
  if (!applied.empty() && !c->InRuntime()) {
    // Not in the runtime yet: the spec it will be made from takes the change.
    RETURN_IF_ERROR(Annotate(UpdateSpecResources(c->id, applied), "update " + who));
  } else if (!applied.empty()) {
    RETURN_IF_ERROR(Annotate(runtime->Update(c->id, applied.dump()), "update " + who));
  }
  // ContainerStatus reports what kubelet asked for, whatever this host could apply of it.
  return UpdateStatus(c->id, [&](Container& next) {
    next.spec.resources = merged;
    return true;
  });
}

}  // namespace berth::pod
