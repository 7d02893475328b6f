// Stop, remove and look up pod sandboxes.

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/concurrently.h"
#include "base/errno_status.h"
#include "base/failpoint.h"
#include "base/logging.h"
#include "base/mount.h"
#include "base/status_macros.h"
#include "base/steps.h"
#include "base/unique_fd.h"
#include "cni/netns.h"
#include "image/rootfs.h"
#include "pod/lookup.h"
#include "pod/monitor.h"
#include "pod/runtime.h"
#include "pod/sandbox_manager.h"

namespace berth::pod {
namespace {

// Waits until the container is stopped or gone: until its process's pidfd says it exited (no
// polling, and no runtime call: on a drain every one of them costs CPU that kubelet's reads
// need). Without a pidfd (kernels before 5.3), by polling the runtime.
bool WaitStopped(OciRuntime& runtime, const std::string& id, int pidfd,
                 std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int ready;
    while ((ready = ::poll(&p, 1, static_cast<int>(timeout.count()))) < 0 && errno == EINTR) {
    }
    return ready > 0;
  }
  for (;;) {
    absl::StatusOr<ContainerState> state = runtime.State(id);
    if (!state.ok() || state->status == "stopped") return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

absl::StatusOr<SandboxPtr> SandboxManager::Get(const std::string& id) const {
  absl::ReaderMutexLock lock(&mu_);
  return FindByIdOrPrefix(sandboxes_, id, "pod sandbox");
}

std::vector<SandboxPtr> SandboxManager::List() const {
  std::vector<SandboxPtr> out;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [id, s] : sandboxes_) out.push_back(s);
  }
  if (const std::set<std::string> kept = names_.Kept(); !kept.empty()) {
    std::erase_if(out, [&](const SandboxPtr& s) { return kept.contains(s->id); });
  }
  return out;
}

std::vector<std::string> SandboxManager::Ids() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [id, s] : sandboxes_) out.push_back(id);
  return out;
}

void SandboxManager::RemoveExpired() {
  for (const std::string& id : names_.Expired()) {
    spdlog::info("pod sandbox {}: no retry claimed it, removing it", id);
    if (absl::Status removed = Remove(id); !removed.ok()) {
      spdlog::warn("pod sandbox {}: {}", id, removed.message());
    }
  }
}

absl::Status SandboxManager::StopPause(const Sandbox& s) {
  std::unique_ptr<OciRuntime> runtime = RuntimeFor(*config_(), s.runtime_handler);
  if (runtime == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("runtime handler \"", s.runtime_handler, "\" is no longer configured"));
  }
  absl::StatusOr<ContainerState> state = runtime->State(s.id);
  if (!state.ok() || state->status == "stopped") return absl::OkStatus();
  // The pause's pid is the runtime's word for it just now; its pidfd tells us when it is gone.
  UniqueFd pidfd(state->pid > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, state->pid, 0)) : -1);
  (void)runtime->Kill(s.id, SIGTERM, false);
  if (WaitStopped(*runtime, s.id, pidfd.get(), options_.stop_timeout)) return absl::OkStatus();
  spdlog::warn("sandbox {}: pause did not stop on SIGTERM, killing it", s.id);
  (void)runtime->Kill(s.id, SIGKILL, true);
  if (!WaitStopped(*runtime, s.id, pidfd.get(), std::chrono::seconds(10))) {
    return absl::InternalError(absl::StrCat("sandbox ", s.id, ": pause survived SIGKILL"));
  }
  return absl::OkStatus();
}

absl::Status SandboxManager::Stop(const std::string& id) {
  StepTimer steps("StopPodSandbox");
  absl::StatusOr<SandboxPtr> found = Get(id);
  if (absl::IsNotFound(found.status())) return absl::OkStatus();
  RETURN_IF_ERROR(found.status());
  std::shared_ptr<absl::Mutex> op = op_locks_.Get((*found)->id);
  absl::MutexLock op_lock(op.get());
  SandboxPtr current = *Get((*found)->id);
  const std::string what = absl::StrCat("stop pod sandbox ", current->id);
  steps.Step("lock");
  // kubelet stops a pod more than once, and RemovePodSandbox stops it first: once a stop has
  // finished there is nothing left to stop, and no need to ask the runtime about the pause.
  if (current->stopped) return absl::OkStatus();
  if (hooks_.stop_all) RETURN_IF_ERROR(Annotate(hooks_.stop_all(current->id), what));
  RETURN_IF_ERROR(Failpoint("sandbox.stop.containers_stopped"));
  steps.Step("stop_containers");
  std::unique_ptr<Slots::Held> slot = teardowns_.Take();
  steps.Step("wait_turn");
  RETURN_IF_ERROR(Annotate(StopPause(*current), what));
  RETURN_IF_ERROR(Failpoint("sandbox.stop.pause_stopped"));
  steps.Step("stop_pause");
  // The stopped pause leaves the runtime now, as containerd's does, while CNI DEL runs:
  // RemovePodSandbox is left with mounts and files. A failure is only logged; Teardown, at the
  // remove, deletes it again.
  absl::Status detached;
  Concurrently(
      [&] {
        std::unique_ptr<OciRuntime> runtime = RuntimeFor(*config_(), current->runtime_handler);
        if (runtime == nullptr) return;
        if (absl::Status deleted = runtime->Delete(current->id, /*force=*/false); !deleted.ok()) {
          spdlog::warn("sandbox {}: delete the stopped pause from the runtime: {}", current->id,
                       deleted.message());
        }
      },
      [&] {
        if (!current->spec.host_network) detached = network_->Detach(AttachSpecOf(*current));
      });
  if (!current->spec.host_network) {
    RETURN_IF_ERROR(Annotate(detached, what));
    RETURN_IF_ERROR(Failpoint("sandbox.stop.network_detached"));
    steps.Step("cni_del");
  }
  RETURN_IF_ERROR(Unmount(PodDir(current->id) + "/shm"));
  steps.Step("unmount_shm");
  RETURN_IF_ERROR(MarkNotReady(current->id, /*stopped=*/true).status());
  steps.Step("persist");
  return absl::OkStatus();
}

void SandboxManager::OnPauseExit(const std::string& id) {
  // Not under the operation lock: creates of containers hold it (shared) for a while, and this
  // must not be dropped. MarkNotReady is safe against a Stop or Remove in progress.
  absl::StatusOr<bool> changed = MarkNotReady(id);
  if (!changed.ok()) {
    spdlog::error("sandbox {}: {}", id, changed.status().message());
  } else if (*changed) {
    spdlog::info("pod sandbox {}: the pause process exited, now NOTREADY", id);
  }
}

absl::StatusOr<bool> SandboxManager::MarkNotReady(const std::string& id, bool stopped) {
  absl::MutexLock update(&update_mu_);
  SandboxPtr current;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return false;
    current = it->second;
  }
  const bool was_ready = current->state == Sandbox::State::kReady;
  if (!was_ready && (!stopped || current->stopped)) return false;
  Sandbox next = *current;
  next.state = Sandbox::State::kNotReady;
  next.stopped = next.stopped || stopped;
  RETURN_IF_ERROR(Persist(next));
  {
    absl::MutexLock lock(&mu_);
    sandboxes_[id] = std::make_shared<const Sandbox>(std::move(next));
  }
  if (was_ready) Publish(id, ContainerEventType::kStopped);
  return was_ready;
}

absl::Status SandboxManager::Remove(const std::string& id) {
  absl::StatusOr<SandboxPtr> found = Get(id);
  if (absl::IsNotFound(found.status())) return absl::OkStatus();
  RETURN_IF_ERROR(found.status());
  const std::string full_id = (*found)->id;
  StepTimer steps("RemovePodSandbox");
  RETURN_IF_ERROR(Stop(full_id));
  steps.Step("stop");
  const std::string what = absl::StrCat("remove pod sandbox ", full_id);
  if (hooks_.remove_all) RETURN_IF_ERROR(Annotate(hooks_.remove_all(full_id), what));
  RETURN_IF_ERROR(Failpoint("sandbox.remove.containers_removed"));
  steps.Step("remove_containers");
  std::shared_ptr<absl::Mutex> op = op_locks_.Get(full_id);
  absl::MutexLock op_lock(op.get());
  absl::StatusOr<SandboxPtr> current = Get(full_id);
  if (!current.ok()) return absl::OkStatus();  // removed meanwhile
  RETURN_IF_ERROR(Annotate(Teardown(**current), what));
  steps.Step("teardown");
  std::unique_ptr<image::ImageStore::Lease> lease;  // released outside our lock
  {
    absl::MutexLock update(&update_mu_);  // no status update may write it back
    RETURN_IF_ERROR(Annotate(store_.Delete(full_id), what));
    absl::MutexLock lock(&mu_);
    sandboxes_.erase(full_id);
    if (auto it = leases_.find(full_id); it != leases_.end()) {
      lease = std::move(it->second);
      leases_.erase(it);
    }
  }
  names_.Erase((*current)->Key(), full_id);
  op_locks_.Erase(full_id);
  lease.reset();
  steps.Step("delete_record");
  Publish(full_id, ContainerEventType::kDeleted);
  spdlog::info("pod sandbox {} removed", full_id);
  return absl::OkStatus();
}

absl::Status SandboxManager::Teardown(const Sandbox& s) {
  absl::Status first;
  auto step = [&](absl::Status status) {
    if (!status.ok()) {
      spdlog::warn("sandbox {}: {}", s.id, status.message());
      if (first.ok()) first = status;
    }
  };
  auto config = config_();
  if (std::unique_ptr<OciRuntime> runtime = RuntimeFor(*config, s.runtime_handler)) {
    step(runtime->Delete(s.id, /*force=*/true));
  } else {
    step(absl::FailedPreconditionError(absl::StrCat(
        "runtime handler \"", s.runtime_handler, "\" is no longer configured: its pause container "
        "cannot be deleted")));
  }
  // The monitor ends with its container; its exit file must land before the files go. A pod's
  // monitor ends with the pause, its last container; one that berthd started but never asked
  // for the pause (killed in between) is ended here.
  EndMonitor(BundleDir(s.id) + "/conmon-pidfile", s.id);
  EndPodMonitor(MonitorDir(s.id), s.id, std::chrono::seconds(1));
  step(Failpoint("sandbox.remove.runtime_deleted"));
  if (!s.spec.host_network) step(network_->Detach(AttachSpecOf(s)));
  step(Unmount(PodDir(s.id) + "/shm"));
  if (!s.netns_path.empty()) step(cni::RemoveNetNs(s.netns_path));
  step(Failpoint("sandbox.remove.netns_removed"));
  // A pause run from pause.image has its root filesystem mounted in the bundle.
  step(image::RemoveRootfs(BundleDir(s.id)));
  for (const std::string& path :
       {PodDir(s.id), BundleDir(s.id), MonitorDir(s.id),
        // The containers' logs when the pod named no log_directory: berth's, not kubelet's.
        absl::StrCat(config->root, "/logs/", s.id),
        absl::StrCat(config->run_root, "/exits/", s.id),
        absl::StrCat(config->run_root, "/socks/", s.id)}) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) step(absl::InternalError(absl::StrCat("remove ", path, ": ", ec.message())));
  }
  step(Failpoint("sandbox.remove.files_removed"));
  return first;
}

}  // namespace berth::pod
