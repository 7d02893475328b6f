// Recovery at start: what berthd finds of its containers, settled.

#include <unistd.h>

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/logging.h"
#include "base/mount.h"
#include "base/status_macros.h"
#include "pod/container_manager.h"
#include "pod/exit_watcher.h"
#include "pod/monitor.h"
#include "pod/runtime.h"

namespace berth::pod {
namespace {

// How often the watcher looks at monitors that may have died without an exit file, and at
// results kept for retries that may have expired.
constexpr auto kCheckEvery = std::chrono::seconds(2);

}  // namespace

bool ContainerManager::SettleUnstarted(const Container& c) {
  // A start cut short before its process was recorded may have left the runtime's container and
  // its monitor: undone, so that the next StartContainer makes them afresh.
  absl::Status undone = EndInRuntime(c);
  if (undone.ok()) undone = RemoveMonitorFiles(c);
  if (!undone.ok()) spdlog::warn("container {}: {}", c.id, undone.message());
  absl::StatusOr<SandboxPtr> sandbox = sandboxes_->Get(c.sandbox_id);
  if (undone.ok() && sandbox.ok() && (*sandbox)->state == Sandbox::State::kReady &&
      IsMountPoint(ContainerDir(c.id) + "/rootfs")) {
    return false;  // as it was: startable
  }
  // Its pod is gone or stopped, or the node restarted (the root filesystem is not mounted):
  // it can never start.
  absl::Status s = ExitWithoutMonitor(
      c.id, 255, "Error",
      undone.ok() ? "its pod or root filesystem went before it was started"
                  : std::string(undone.message()));
  if (!s.ok()) spdlog::error("container {}: {}", c.id, s.message());
  return true;
}

absl::Status ContainerManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<std::string> records, store_.Load());
  // Creates that were under way when berthd stopped: undone before anything else looks.
  store_.UndoIntents([this](const std::string& record) {
    ASSIGN_OR_RETURN(Container c, ContainerFromJson(record));
    return Teardown(c);
  });
  std::vector<Container> loaded;
  for (const std::string& record : records) {
    absl::StatusOr<Container> c = ContainerFromJson(record);
    if (!c.ok()) {
      spdlog::error("skipping an unreadable container record: {}", c.status().message());
      continue;
    }
    loaded.push_back(*std::move(c));
  }
  for (Container& c : loaded) {
    const std::string id = c.id;
    absl::StatusOr<SandboxPtr> sandbox = sandboxes_->Get(c.sandbox_id);
    names_.Hold(sandbox.ok() ? c.Key(**sandbox) : absl::StrCat(c.spec.name, "_", c.sandbox_id), id);
    // Leases take the image store's lock: never while holding ours.
    auto lease = std::make_unique<image::ImageStore::Lease>(images_, c.chain_ids);
    absl::MutexLock lock(&mu_);
    leases_[id] = std::move(lease);
    containers_[id] = std::make_shared<const Container>(std::move(c));
  }
  // Exits that happened while berthd was down, and monitors that are gone (a reboot empties
  // run_root: no exit files, no monitors); starts that berthd did not see through.
  int settled = 0;
  for (const ContainerPtr& c : List()) {
    if (c->state == Container::State::kExited) continue;
    if (c->state == Container::State::kCreated && !c->InRuntime()) {
      if (SettleUnstarted(*c)) ++settled;
      continue;
    }
    if (::access(ExitFile(c->id).c_str(), F_OK) == 0) {
      RecordExit(c->id, false);
      ++settled;
    } else if (!MonitorAlive(c->monitor_pid, c->id, c->sandbox_id)) {
      RecordExit(c->id, true);
      ++settled;
    } else if (c->state == Container::State::kCreated) {
      std::unique_ptr<OciRuntime> runtime = RuntimeFor(c->runtime_handler);
      absl::StatusOr<ContainerState> state =
          runtime ? runtime->State(c->id) : absl::NotFoundError("no runtime");
      if (state.ok() && state->status == "running") {
        RETURN_IF_ERROR(UpdateStatus(c->id, [&](Container& next) {
          next.state = Container::State::kRunning;
          next.started_at_ns = absl::ToUnixNanos(clock_.Now());
          return true;
        }));
        spdlog::info("container {}: started while berthd was going down, now RUNNING", c->id);
        ++settled;
      }
    }
  }
  spdlog::info("recovered {} container(s), {} of them settled", loaded.size(), settled);
  recovery_ = {static_cast<int>(loaded.size()), settled};
  watcher_ = std::make_unique<ExitWatcher>(
      config_()->run_root + "/exits", kCheckEvery,
      ExitWatcher::Callbacks{.on_exit = [this](const std::string& name) { OnExitFile(name); },
                             .on_tick = [this] {
                               CheckMonitors();
                               RemoveExpired();
                             }});
  watcher_->Start();
  return absl::OkStatus();
}

}  // namespace berth::pod
