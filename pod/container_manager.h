#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "base/steps.h"
#include "base/work_pool.h"
#include "base/sqlite.h"
#include "config/config.h"
#include "nlohmann/json_fwd.hpp"
#include "image/store.h"
#include "pod/container.h"
#include "pod/events.h"
#include "pod/exec_process.h"
#include "pod/exit_watcher.h"
#include "pod/monitor.h"
#include "pod/name_registrar.h"
#include "pod/op_locks.h"
#include "pod/record_store.h"
#include "pod/sandbox_manager.h"

namespace berth::pod {

class AppArmor;

// Creates, starts, stops, removes and knows containers: their root filesystems (overlay over the
// image layers, which stay leased), OCI bundles, monitors (berth-conmon or conmon) and runtime
// state; notices exits (inotify on run_root/exits, and monitors that died without an exit file)
// and recovers everything from berth.db and the monitors' files at start.
// Every container is in berth.db (table containers) before it is reported; lookups come from
// memory. A create records its intent before it makes anything, so that a failure, or a berthd
// killed in the middle, is undone by Teardown (at once, or at the next start).
// Thread-safe: the store lock is held briefly and never across runtime, monitor or disk
// work; a per-container lock serialises lifecycle operations; status changes go through
// UpdateStatus (apply to a copy, persist, publish).
// Its parts, one file each: container_manager.cc (records, lookups, status updates),
// container_create.cc (create and its undo), container_lifecycle.cc (start, stop, remove,
// update), container_exec.cc (exec, attach, log reopening), container_exits.cc (recording exits),
// container_recover.cc (settling at start); the exit watcher is its own class (ExitWatcher).
class ContainerManager {
 public:
  using ConfigSource = SandboxManager::ConfigSource;
  struct Options {
    std::string monitor_path;
    // berth-exec, for ExecSync with monitor.exec_sync "berth"; "" = the runtime's exec always.
    std::string exec_path;
    AppArmor* apparmor = nullptr;  // RuntimeDefault confinement where the host has AppArmor
    // The OCI runtimes and monitors; unset: RuntimeFor and ConmonMonitors(monitor_path).
    RuntimeFactory runtimes;
    MonitorFactory monitors;
    // How long a container made for a caller that gave up waits for the caller's retry.
    std::chrono::seconds keep_abandoned{std::chrono::minutes(5)};
    const Clock* clock = nullptr;  // unset: Clock::Real()
    // Told of every exit recorded, those found at start too: the container as recorded and its
    // pod (null if the pod is gone). Called on the thread that recorded it; must not block.
    std::function<void(const Container& container, const Sandbox* sandbox)> on_exit;
  };

  ContainerManager(SqliteDb* db, ConfigSource config, SandboxManager* sandboxes,
                   image::ImageStore* images, EventBus* events, Options options);
  ~ContainerManager();
  ContainerManager(const ContainerManager&) = delete;
  ContainerManager& operator=(const ContainerManager&) = delete;

  // Creates the schema, loads every container and settles what happened while berthd was down:
  // creates that were under way are undone; a start that was under way is RUNNING if the runtime
  // says so; exits get their codes from the exit files; a container whose monitor and process are
  // gone without one is exited with an error; after a reboot (empty run_root) everything is
  // exited and its mounts are gone. Then starts watching for exits.
  absl::Status Recover();
  // What the last Recover found: containers loaded, and those it settled (exits that happened
  // while berthd was down, monitors that were gone, starts it had not seen through).
  struct RecoveryCounts {
    int loaded = 0;
    int settled = 0;
  };
  RecoveryCounts recovery() const { return recovery_; }
  // Stops the exit watcher (also done by the destructor).
  void Shutdown();

  // CreateContainer. NotFound for an unknown sandbox or image; FailedPrecondition when the
  // sandbox is not ready; AlreadyExists naming the holder of the name; InvalidArgument for a bad
  // request; Internal with the runtime's message. Leaves nothing behind on failure. A container
  // finished after `origin` has gone is kept for the retry of the same request.
  absl::StatusOr<std::string> Create(const std::string& sandbox_id, const ContainerSpec& spec,
                                     const RequestOrigin& origin = {});
  // StartContainer: FailedPrecondition unless CREATED; the runtime creates the container (its
  // bundle was made by Create) and starts it. If it cannot, the container is EXITED
  // (ContainerCannotRun) and the error returned.
  absl::Status Start(const std::string& id);
  // StopContainer: the stop signal, up to `timeout` for the exit, then SIGKILL; returns once the
  // exit is recorded. OK for unknown ids and stopped containers.
  absl::Status Stop(const std::string& id, std::chrono::seconds timeout);
  // RemoveContainer: kills a running container first. OK for unknown ids.
  absl::Status Remove(const std::string& id);
  // Stop (timeout 0) or remove every container of a sandbox, all at once, a thread each.
  absl::Status StopAllIn(const std::string& sandbox_id);
  absl::Status RemoveAllIn(const std::string& sandbox_id);

  absl::StatusOr<ContainerPtr> Get(const std::string& id) const;
  // Every container but those kept for a retry.
  std::vector<ContainerPtr> List() const;
  // Every container id this manager knows, kept ones too (the orphan sweep spares them).
  std::vector<std::string> Ids() const;
  // Removes the containers, then the sandboxes, kept for a retry that did not come within
  // keep_abandoned. The exit watcher calls it every few seconds.
  void RemoveExpired();

  // UpdateContainerResources: applies what this host can enforce of them through the runtime
  // (OciResources) and merges them into the recorded request (MergeResourceUpdate).
  absl::Status UpdateResources(const std::string& id, const ResourcesSpec& resources);
  // ReopenContainerLog: FailedPrecondition unless running.
  absl::Status ReopenLog(const std::string& id);
  // ExecSync. FailedPrecondition unless running; DeadlineExceeded on timeout.
  absl::StatusOr<ExecResult> ExecSync(const std::string& id, const std::vector<std::string>& cmd,
                                      std::chrono::seconds timeout);

  // CRI Exec: starts `cmd` in a running container for an interactive session.
  // FailedPrecondition unless running; Internal with the runtime's message.
  absl::StatusOr<std::unique_ptr<ExecProcess>> StartExec(const std::string& id,
                                                         const std::vector<std::string>& cmd,
                                                         bool tty, unsigned width = 0,
                                                         unsigned height = 0);
  // CRI Attach: the monitor's attach socket and ctl fifo of a running container.
  absl::StatusOr<std::pair<std::string, std::string>> AttachPaths(const std::string& id) const;

  // Where a container's things are.
  std::string ContainerDir(const std::string& id) const;  // bundle, upper, work, rootfs
  // The container's OCI spec (JSON): its bundle's config.json, read at each call (exec, verbose
  // status). Written without fsync: after a power loss it may be unreadable (Internal), which
  // matters only to the verbose status of a container that no longer runs.
  absl::StatusOr<std::string> OciSpec(const Container& c) const;
  std::string MonitorDir(const std::string& id) const;    // exit and oom files
  std::string ExitFile(const std::string& id) const;

 private:
  // fn on each of the sandbox's containers, concurrently; the first error.
  absl::Status EachIn(const std::string& sandbox_id,
                      const std::function<absl::Status(const std::string&)>& fn);
  absl::Status Persist(const Container& c);
  // Applies `fn` to a copy of the container, persists and publishes it; `fn` returns false to
  // leave the container unchanged. NotFound if it is gone.
  absl::Status UpdateStatus(const std::string& id, const std::function<bool(Container&)>& fn);
  // Records the exit from the monitor's exit file (or, if `monitor_gone`, an error exit).
  // Idempotent. While a Start is between `runtime start` and recording RUNNING, the exit is
  // recorded by that Start right after (kubelet expects STARTED before STOPPED).
  void RecordExit(const std::string& id, bool monitor_gone);
  // Deletes an exited container from its runtime, in the background, as containerd does when
  // a task exits: RemoveContainer, often much later, is left with mounts and files. Under the
  // container's operation lock, so that a Remove waits for a delete under way.
  void DeleteFromRuntime(const std::string& id);
  // Waits until the container is EXITED (the exit watcher records it) or `timeout` passes.
  bool WaitExited(const std::string& id, std::chrono::milliseconds timeout);
  // Frees everything a container has or may have (runtime state, monitor, root filesystem,
  // bundle, monitor files): idempotent, goes on past a failing step, returns the first error.
  // Undoes a failed or interrupted create; the end of RemoveContainer.
  absl::Status Teardown(const Container& c);
  // The steps of Create after its intent is recorded: root filesystem, spec, record.
  absl::Status Make(Container& c, const Sandbox& sandbox, const image::ImageRecord& image,
                    pid_t target_pid, StepTimer& steps);
  // The first step of StartContainer: the monitor has the runtime create the container from its
  // bundle; its process and monitor are recorded (still CREATED) before `runtime start`. True
  // when the monitor had the runtime start it too (Monitor::Starts): no `runtime start` then.
  absl::StatusOr<bool> CreateInRuntime(const Container& c, OciRuntime* runtime, StepTimer& steps);
  // Deletes the container from its runtime (forced) and ends its monitor; idempotent.
  absl::Status EndInRuntime(const Container& c);
  // Removes the monitor's files of the container: exit and oom files, attach socket, pid file.
  absl::Status RemoveMonitorFiles(const Container& c);
  // Records the container EXITED with `exit_code`, `reason` and `message`, finished now, unless
  // it is exited already: for an end the monitor does not record (a start that failed, a
  // container that never ran).
  absl::Status ExitWithoutMonitor(const std::string& id, int32_t exit_code,
                                  const std::string& reason, const std::string& message);
  // Recovery of a CREATED container the runtime had not made (or not recorded making): undoes
  // what a start cut short left; exits it if it can no longer start. True if it changed.
  bool SettleUnstarted(const Container& c);
  // Merges OCI `resources` into the bundle's spec (a container the runtime has not made yet).
  absl::Status UpdateSpecResources(const std::string& id, const nlohmann::json& resources);
  std::unique_ptr<OciRuntime> RuntimeFor(const std::string& handler) const;
  // The exit watcher's callbacks: an exit file was written (a container's or a pause's); and
  // every few seconds, monitors that died without writing one.
  void OnExitFile(const std::string& name);
  void CheckMonitors();
  void Publish(const Container& c, ContainerEventType type);
  std::string KeyOf(const Container& c) const;

  SqliteDb* const db_;
  const ConfigSource config_;
  SandboxManager* const sandboxes_;
  image::ImageStore* const images_;
  EventBus* const events_;  // may be null
  const Options options_;
  RecoveryCounts recovery_;  // written by Recover, before any other thread reads it
  const RuntimeFactory runtimes_;
  const MonitorFactory monitors_;
  const Clock& clock_;
  RecordStore store_;
  NameRegistrar names_;
  OpLocks op_locks_;

  mutable absl::Mutex mu_;
  std::map<std::string, ContainerPtr> containers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<image::ImageStore::Lease>> leases_ ABSL_GUARDED_BY(mu_);
  // Containers between `runtime start` and RUNNING recorded, and whether an exit (true: with the
  // monitor gone) was noticed meanwhile.
  std::map<std::string, std::optional<bool>> starting_ ABSL_GUARDED_BY(mu_);
  absl::Mutex update_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one status update at a time
  // DeleteFromRuntime's thread: one delete at a time (a drain's exits do not all start runc at
  // once). Before the watcher, which feeds it, so that it goes after it.
  WorkPool deletes_{{.max_threads = 1, .idle_timeout = absl::Seconds(10)}};
  std::unique_ptr<ExitWatcher> watcher_;  // from Recover() on
};

}  // namespace berth::pod
