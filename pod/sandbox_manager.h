#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/sqlite.h"
#include "base/steps.h"
#include "cni/plugin.h"
#include "config/config.h"
#include "image/store.h"
#include "pod/cgroup_support.h"
#include "pod/events.h"
#include "pod/monitor.h"
#include "pod/name_registrar.h"
#include "pod/op_locks.h"
#include "pod/record_store.h"
#include "pod/runtime_features.h"
#include "pod/sandbox.h"

namespace berth::pod {

// The CNI attachment of a sandbox: its namespace, interface and the pod's CNI_ARGS.
cni::AttachSpec AttachSpecOf(const Sandbox& sandbox);

// Runs, stops, removes and knows pod sandboxes: the pod's files and /dev/shm, its network
// namespace and CNI attachment, and its pause container (monitor + OCI runtime). Every sandbox is
// in berth.db (table sandboxes) before it is reported; lookups are answered from memory. A
// RunPodSandbox records its intent before it makes anything: a start that fails, or a berthd
// killed in the middle of one, is undone by Teardown (at once, or at the next start).
// Thread-safe: the store lock is held only briefly, never across runtime, CNI or disk work;
// a per-sandbox lock serialises lifecycle operations on one sandbox.
class SandboxManager {
 public:
  using ConfigSource = std::function<std::shared_ptr<const config::Config>()>;
  struct Options {
    std::string monitor_path;  // conmon-compatible monitor
    std::string pause_rootfs;  // prepared at start: berth-pause and mount points
    std::chrono::seconds stop_timeout{10};
    // With pause.image set: the image (pulled if missing) and the store its layers are in.
    std::function<absl::StatusOr<image::ImagePtr>(const std::string& name)> pause_image;
    image::ImageStore* images = nullptr;
    // What the host's cgroups can enforce (ProbeCgroupSupport at start).
    CgroupSupport cgroups;
    // The OCI runtimes and monitors; unset: RuntimeFor and ConmonMonitors(monitor_path).
    RuntimeFactory runtimes;
    MonitorFactory monitors;
    // How long a sandbox made for a caller that gave up waits for the caller's retry.
    std::chrono::seconds keep_abandoned{std::chrono::minutes(5)};
    const Clock* clock = nullptr;  // unset: Clock::Real()
  };

  SandboxManager(SqliteDb* db, ConfigSource config, cni::NetworkPlugin* network, Options options);
  SandboxManager(const SandboxManager&) = delete;
  SandboxManager& operator=(const SandboxManager&) = delete;

  // Creates the schema and loads every sandbox; a READY sandbox whose pause process is gone (a
  // reboot, or it died while berthd was down) becomes NOTREADY. Undoes the starts that were under
  // way when berthd stopped (an intent that cannot be undone now stays for the next start).
  absl::Status Recover();

  // RunPodSandbox. InvalidArgument for a bad request (naming the field) or an unknown runtime
  // handler; AlreadyExists naming the sandbox that holds the name; FailedPrecondition when no CNI
  // network is configured; otherwise the failing step's error. Leaves nothing behind on failure.
  // A sandbox finished after `origin` has gone is kept for the retry of the same request.
  absl::StatusOr<std::string> Run(const SandboxSpec& spec, const RequestOrigin& origin = {});
  // Removes kept sandboxes that no retry claimed in time (the container manager's watcher calls
  // this now and then).
  void RemoveExpired();
  // StopPodSandbox / RemovePodSandbox: idempotent, OK for unknown ids.
  absl::Status Stop(const std::string& id);
  absl::Status Remove(const std::string& id);

  // The containers of a pod, which the container manager owns: Stop stops them first, Remove
  // removes them first. Set once, before serving.
  struct ContainerHooks {
    std::function<absl::Status(const std::string& sandbox_id)> stop_all;
    std::function<absl::Status(const std::string& sandbox_id)> remove_all;
  };
  void SetContainerHooks(ContainerHooks hooks) { hooks_ = std::move(hooks); }
  // Sandbox lifecycle events (created, started, stopped, deleted) go here. Set before serving.
  void SetEventBus(EventBus* events) { events_ = events; }

  // The monitor of a pause container wrote its exit file: the sandbox is NOTREADY.
  void OnPauseExit(const std::string& id);

  // What a configured runtime handler can do ("" = the default handler); nothing for a handler
  // that is not configured. Asks each runtime binary once.
  HandlerFeatures FeaturesOf(const std::string& handler) const;

  // The cgroups path of a container (or the pause) of this sandbox, per the cgroup manager.
  std::string CgroupsPathFor(const Sandbox& sandbox, const std::string& container_id) const;
  // What the cgroup of a container (or the pause) of this sandbox can enforce.
  CgroupSupport CgroupsFor(const Sandbox& sandbox) const;
  // What the host's cgroups can enforce, as probed at start.
  const CgroupSupport& HostCgroups() const { return options_.cgroups; }
  // Whether the monitor of `sandbox`'s pause container still runs (its pid file names a live
  // monitor of this sandbox). One that is gone leaves the pause's exit unrecorded.
  bool PauseMonitorAlive(const Sandbox& sandbox) const;

  // By full id or unique prefix. NotFound / InvalidArgument (ambiguous).
  absl::StatusOr<SandboxPtr> Get(const std::string& id) const;
  // Every sandbox but those kept for a retry.
  std::vector<SandboxPtr> List() const;
  // Every sandbox id this manager knows, kept ones too (the orphan sweep spares them).
  std::vector<std::string> Ids() const;
  // The lifecycle lock of a sandbox: CreateContainer holds it shared while it checks that the
  // sandbox is ready and creates in it; StopPodSandbox holds it exclusively.
  std::shared_ptr<absl::Mutex> OperationLock(const std::string& id) { return op_locks_.Get(id); }
  // The runtime of a handler (nullptr if it is not configured) and a monitor for it.
  std::unique_ptr<OciRuntime> RuntimeFor(const config::Config& config,
                                         const std::string& handler) const {
    return runtimes_(config, handler);
  }
  MonitorPtr MonitorFor(const OciRuntime* runtime, const config::Config& config) const {
    return monitors_(runtime, config);
  }

  // Where a sandbox's things are.
  std::string PodDir(const std::string& id) const;
  std::string BundleDir(const std::string& id) const;
  // The pause's exit and oom files; with one monitor per pod, that monitor's socket and pid file.
  std::string MonitorDir(const std::string& id) const;
  std::string NetNsPath(const std::string& id) const;

 private:
  absl::Status Persist(const Sandbox& sandbox);
  absl::Status StopPause(const Sandbox& sandbox);
  // READY -> NOTREADY, persisted and published; false if it was not READY (or is gone). With
  // `stopped` (the end of StopPodSandbox) that is persisted too, also on a NOTREADY sandbox.
  absl::StatusOr<bool> MarkNotReady(const std::string& id, bool stopped = false);
  // Frees everything a sandbox has or may have (pause container and monitor, CNI attachment,
  // /dev/shm, network namespace, bundle and files): idempotent, goes on past a failing step and
  // returns the first error. Undoes a failed or interrupted start; the end of RemovePodSandbox.
  absl::Status Teardown(const Sandbox& sandbox);
  // The steps of Run after the intent is recorded; `s` collects what they made.
  absl::Status Make(Sandbox& s, const config::Config& config,
                    const std::optional<cni::NetworkConf>& network, StepTimer& steps);
  // Writes the bundle and starts the pause container; records the pause image's layers in
  // `sandbox` when pause.image is used.
  absl::StatusOr<std::string> StartPause(Sandbox& sandbox, const config::Config& config,
                                         StepTimer& steps);

  SqliteDb* const db_;
  const ConfigSource config_;
  cni::NetworkPlugin* const network_;
  const Options options_;
  const RuntimeFactory runtimes_;
  const MonitorFactory monitors_;
  const Clock& clock_;
  ContainerHooks hooks_;
  EventBus* events_ = nullptr;
  mutable RuntimeFeatureCache features_;
  void Publish(const std::string& id, ContainerEventType type);

  RecordStore store_;
  NameRegistrar names_;
  OpLocks op_locks_;
  // Pod teardowns (pause, network, shm) run at most one per CPU at once: a drain stops every pod
  // together, and more at once only crowds out the reads kubelet keeps making.
  Slots teardowns_{static_cast<int>(std::max(2u, std::thread::hardware_concurrency()))};
  absl::Mutex update_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one state change or removal at a time
  mutable absl::Mutex mu_;
  std::map<std::string, SandboxPtr> sandboxes_ ABSL_GUARDED_BY(mu_);
  // The pause image's layers, while a sandbox's pause runs from them.
  std::map<std::string, std::unique_ptr<image::ImageStore::Lease>> leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::pod
