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
#include "base/errno_status.h"
#include "base/logging.h"
#include "base/mount.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "cni/netns.h"
#include "pod/lookup.h"
#include "image/rootfs.h"
#include "pod/runtime.h"
#include "pod/sandbox_manager.h"

namespace berth::pod {
namespace {

// Waits until the container is stopped or gone: for its process's pidfd to say it exited (no
// polling), then for the runtime to agree. Without a pidfd (kernels before 5.3), by polling.
bool WaitStopped(OciRuntime& runtime, const std::string& id, int pidfd,
                 std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    while (::poll(&p, 1, static_cast<int>(timeout.count())) < 0 && errno == EINTR) {
    }
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
  absl::ReaderMutexLock lock(&mu_);
  std::vector<SandboxPtr> out;
  for (const auto& [id, s] : sandboxes_) out.push_back(s);
  return out;
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
  absl::StatusOr<SandboxPtr> found = Get(id);
  if (absl::IsNotFound(found.status())) return absl::OkStatus();
  RETURN_IF_ERROR(found.status());
  std::shared_ptr<absl::Mutex> op = OpLock((*found)->id);
  absl::MutexLock op_lock(op.get());
  SandboxPtr current = *Get((*found)->id);
  if (hooks_.stop_all) {
    RETURN_IF_ERROR(Annotate(hooks_.stop_all(current->id),
                             absl::StrCat("stop pod sandbox ", current->id)));
  }
  RETURN_IF_ERROR(Annotate(StopPause(*current), absl::StrCat("stop pod sandbox ", current->id)));
  if (!current->spec.host_network) {
    cni::AttachSpec attach{.container_id = current->id,
                           .netns_path = current->netns_path,
                           .args = {{"K8S_POD_NAMESPACE", current->spec.namespace_name},
                                    {"K8S_POD_NAME", current->spec.name},
                                    {"K8S_POD_INFRA_CONTAINER_ID", current->id},
                                    {"K8S_POD_UID", current->spec.uid}},
                           .port_mappings = current->spec.port_mappings};
    RETURN_IF_ERROR(Annotate(network_->Detach(attach),
                             absl::StrCat("stop pod sandbox ", current->id)));
  }
  RETURN_IF_ERROR(Unmount(PodDir(current->id) + "/shm"));
  if (current->state == Sandbox::State::kNotReady) return absl::OkStatus();
  Sandbox next = *current;
  next.state = Sandbox::State::kNotReady;
  RETURN_IF_ERROR(Persist(next));
  const std::string id_copy = next.id;  // the right side is evaluated first
  {
    absl::MutexLock lock(&mu_);
    sandboxes_[id_copy] = std::make_shared<const Sandbox>(std::move(next));
  }
  Publish(id_copy, ContainerEventType::kStopped);
  return absl::OkStatus();
}

void SandboxManager::OnPauseExit(const std::string& id) {
  absl::StatusOr<SandboxPtr> found;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end() || it->second->state != Sandbox::State::kReady) return;
  }
  // Under the operation lock: a Stop in progress settles the state itself.
  std::shared_ptr<absl::Mutex> op = OpLock(id);
  if (!op->TryLock()) return;
  absl::Cleanup unlock = [&] { op->Unlock(); };
  found = Get(id);
  if (!found.ok() || (*found)->state != Sandbox::State::kReady) return;
  Sandbox next = **found;
  next.state = Sandbox::State::kNotReady;
  if (absl::Status s = Persist(next); !s.ok()) {
    spdlog::error("sandbox {}: {}", id, s.message());
    return;
  }
  spdlog::info("pod sandbox {}: the pause process exited, now NOTREADY", id);
  {
    absl::MutexLock lock(&mu_);
    sandboxes_[id] = std::make_shared<const Sandbox>(std::move(next));
  }
  Publish(id, ContainerEventType::kStopped);
}

absl::Status SandboxManager::Remove(const std::string& id) {
  absl::StatusOr<SandboxPtr> found = Get(id);
  if (absl::IsNotFound(found.status())) return absl::OkStatus();
  RETURN_IF_ERROR(found.status());
  const std::string full_id = (*found)->id;
  RETURN_IF_ERROR(Stop(full_id));
  if (hooks_.remove_all) {
    RETURN_IF_ERROR(Annotate(hooks_.remove_all(full_id),
                             absl::StrCat("remove pod sandbox ", full_id)));
  }
  std::shared_ptr<absl::Mutex> op = OpLock(full_id);
  absl::MutexLock op_lock(op.get());
  absl::StatusOr<SandboxPtr> current = Get(full_id);
  if (!current.ok()) return absl::OkStatus();  // removed meanwhile
  auto config = config_();
  if (std::unique_ptr<OciRuntime> runtime = RuntimeFor(*config, (*current)->runtime_handler)) {
    RETURN_IF_ERROR(Annotate(runtime->Delete(full_id, /*force=*/true),
                             absl::StrCat("remove pod sandbox ", full_id)));
  }
  if (!(*current)->netns_path.empty()) RETURN_IF_ERROR(cni::RemoveNetNs((*current)->netns_path));
  // A pause run from pause.image has its root filesystem mounted in the bundle.
  RETURN_IF_ERROR(image::RemoveRootfs(BundleDir(full_id)));
  std::error_code ec;
  for (const std::string& path :
       {PodDir(full_id), BundleDir(full_id), absl::StrCat(config->run_root, "/monitor/", full_id),
        absl::StrCat(config->run_root, "/exits/", full_id),
        absl::StrCat(config->run_root, "/socks/", full_id)}) {
    std::filesystem::remove_all(path, ec);
  }
  RETURN_IF_ERROR(Forget(full_id));
  std::unique_ptr<image::ImageStore::Lease> lease;  // released outside our lock
  {
    absl::MutexLock lock(&mu_);
    names_.erase((*current)->Key());
    sandboxes_.erase(full_id);
    op_locks_.erase(full_id);
    if (auto it = leases_.find(full_id); it != leases_.end()) {
      lease = std::move(it->second);
      leases_.erase(it);
    }
  }
  lease.reset();
  Publish(full_id, ContainerEventType::kDeleted);
  spdlog::info("pod sandbox {} removed", full_id);
  return absl::OkStatus();
}

}  // namespace berth::pod
