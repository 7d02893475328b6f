#include "pod/sandbox_manager.h"

#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/random_id.h"
#include "base/mount.h"
#include "base/status_macros.h"
#include "cni/conf.h"
#include "cni/netns.h"
#include "image/rootfs.h"
#include "pod/monitor.h"
#include "pod/oci_spec.h"
#include "pod/request_limits.h"
#include "pod/resources.h"
#include "pod/runtime.h"

namespace berth::pod {
namespace {

std::string CgroupsPath(const config::Config& config, const std::string& parent,
                        const std::string& id) {
  if (config.cgroup_manager == "systemd") {
    return absl::StrCat(parent.empty() ? "system.slice" : parent, ":berth:", id);
  }
  // The leaf is the bare id, as containerd names it: tools that map cgroupfs paths back to
  // containers (kubelet's extractIDFromCgroupPath, cAdvisor-based monitoring) take the last
  // element of the path as the container id.
  return parent.empty() ? "" : absl::StrCat(parent, "/", id);
}

}  // namespace

SandboxManager::SandboxManager(SqliteDb* db, ConfigSource config, cni::NetworkPlugin* network,
                               Options options)
    : db_(db),
      config_(std::move(config)),
      network_(network),
      options_(std::move(options)),
      runtimes_(options_.runtimes ? options_.runtimes : RuntimeFactory(pod::RuntimeFor)),
      monitors_(options_.monitors ? options_.monitors : ConmonMonitors(options_.monitor_path)),
      clock_(options_.clock ? *options_.clock : Clock::Real()),
      store_(db, "sandboxes"),
      names_("pod sandbox", options_.keep_abandoned, clock_) {}

std::string SandboxManager::PodDir(const std::string& id) const {
  return absl::StrCat(config_()->run_root, "/pods/", id);
}
std::string SandboxManager::BundleDir(const std::string& id) const {
  return absl::StrCat(config_()->root, "/sandboxes/", id);
}
std::string SandboxManager::MonitorDir(const std::string& id) const {
  return absl::StrCat(config_()->run_root, "/monitor/", id);
}
bool SandboxManager::PauseMonitorAlive(const Sandbox& sandbox) const {
  return MonitorAlive(ReadPidFile(BundleDir(sandbox.id) + "/conmon-pidfile"), sandbox.id);
}

std::string SandboxManager::NetNsPath(const std::string& id) const {
  return absl::StrCat(config_()->run_root, "/netns/", id);
}

std::string SandboxManager::CgroupsPathFor(const Sandbox& sandbox,
                                           const std::string& container_id) const {
  return CgroupsPath(*config_(), sandbox.spec.cgroup_parent, container_id);
}

HandlerFeatures SandboxManager::FeaturesOf(const std::string& handler) const {
  std::shared_ptr<const config::Config> config = config_();
  auto it = config->runtimes.find(handler.empty() ? config->default_runtime : handler);
  return it == config->runtimes.end() ? HandlerFeatures{} : features_.Get(it->second.path);
}

CgroupSupport SandboxManager::CgroupsFor(const Sandbox& sandbox) const {
  return ForCgroupParent(options_.cgroups, CgroupParentDir(sandbox.spec.cgroup_parent,
                                                           config_()->cgroup_manager == "systemd"));
}

void SandboxManager::Publish(const std::string& id, ContainerEventType type) {
  if (events_ == nullptr) return;
  events_->Publish({.id = id, .sandbox_id = id, .type = type,
                    .created_at_ns = absl::ToUnixNanos(clock_.Now())});
}

absl::Status SandboxManager::Persist(const Sandbox& s) {
  return Annotate(store_.Put(s.id, s.Key(), "", SandboxToJson(s)),
                  absl::StrCat("persist sandbox ", s.id));
}

absl::Status SandboxManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<std::string> records, store_.Load());
  // Starts that were under way when berthd stopped: undone before anything else looks.
  store_.UndoIntents([this](const std::string& record) {
    ASSIGN_OR_RETURN(Sandbox s, SandboxFromJson(record));
    return Teardown(s);
  });
  std::vector<Sandbox> loaded;
  for (const std::string& record : records) {
    ASSIGN_OR_RETURN(Sandbox s, SandboxFromJson(record));
    loaded.push_back(std::move(s));
  }
  auto config = config_();
  for (Sandbox& s : loaded) {
    if (s.state == Sandbox::State::kReady && config->runtimes.contains(s.runtime_handler)) {
      absl::StatusOr<ContainerState> state = RuntimeFor(*config, s.runtime_handler)->State(s.id);
      if (!state.ok() || state->status != "running") {
        spdlog::info("sandbox {}: pause container is gone, now NOTREADY", s.id);
        s.state = Sandbox::State::kNotReady;
        RETURN_IF_ERROR(Persist(s));
      }
    }
    const std::string id = s.id;  // not s.id below: the right side is evaluated first
    // Leases take the image store's lock: never while holding ours.
    std::unique_ptr<image::ImageStore::Lease> lease;
    if (!s.pause_layers.empty() && options_.images != nullptr) {
      lease = std::make_unique<image::ImageStore::Lease>(options_.images, s.pause_layers);
    }
    names_.Hold(s.Key(), id);
    absl::MutexLock lock(&mu_);
    if (lease) leases_[id] = std::move(lease);
    sandboxes_[id] = std::make_shared<const Sandbox>(std::move(s));
  }
  spdlog::info("recovered {} pod sandbox(es)", loaded.size());
  return absl::OkStatus();
}


}  // namespace berth::pod
