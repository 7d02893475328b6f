// CreateContainer and the teardown that undoes it (or ends RemoveContainer).

#include <unistd.h>

#include <filesystem>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/failpoint.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/random_id.h"
#include "base/status_macros.h"
#include "base/steps.h"
#include "image/reference.h"
#include "image/rootfs.h"
#include "nlohmann/json.hpp"
#include "pod/apparmor.h"
#include "pod/cgroup_support.h"
#include "pod/container_manager.h"
#include "pod/container_spec.h"
#include "pod/request_limits.h"
#include "pod/runtime.h"

namespace berth::pod {
namespace {

absl::Status ValidateRequest(const ContainerSpec& spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("config.metadata.name is empty");
  if (spec.image.empty()) return absl::InvalidArgumentError("config.image.image is empty");
  RETURN_IF_ERROR(CheckLength("config.metadata.name", spec.name, kMaxNameLength));
  RETURN_IF_ERROR(CheckMetadata("config.labels", spec.labels));
  RETURN_IF_ERROR(CheckMetadata("config.annotations", spec.annotations));
  // kubelet's "<container name>/<restart count>.log": it must stay in the pod's log directory.
  return CheckConfinedPath("config.log_path", spec.log_path);
}

// What a retry of the same CreateContainer has in common with the first request.
std::string Fingerprint(const std::string& sandbox_id, const ContainerSpec& spec) {
  return ContainerToJson(Container{.sandbox_id = sandbox_id, .spec = spec});
}

}  // namespace

absl::StatusOr<std::string> ContainerManager::Create(const std::string& sandbox_id,
                                                     const ContainerSpec& spec,
                                                     const RequestOrigin& caller) {
  StepTimer steps("CreateContainer");
  WarmCgroupAttach();  // its StartContainer usually follows at once
  RETURN_IF_ERROR(ValidateRequest(spec));
  ASSIGN_OR_RETURN(SandboxPtr found, sandboxes_->Get(sandbox_id));
  // Shared with other creates, exclusive with StopPodSandbox: a pod that is stopping gets no new
  // container, and one that is ready stays so until this create is done.
  std::shared_ptr<absl::Mutex> sandbox_op = sandboxes_->OperationLock(found->id);
  absl::ReaderMutexLock sandbox_lock(sandbox_op.get());
  ASSIGN_OR_RETURN(SandboxPtr sandbox, sandboxes_->Get(found->id));
  if (sandbox->state != Sandbox::State::kReady) {
    return absl::FailedPreconditionError(
        absl::StrCat("pod sandbox ", sandbox->id, " is not ready"));
  }
  for (const MountSpec& m : spec.mounts) {
    // The CRI: a runtime that cannot make a mount recursively read-only must refuse it.
    if (m.recursive_readonly &&
        !sandboxes_->FeaturesOf(sandbox->runtime_handler).recursive_read_only_mounts) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mounts ", m.container_path, ": recursive_read_only: runtime handler \"",
          sandbox->runtime_handler, "\" does not support recursive read-only mounts"));
    }
  }
  // Checked before anything is made: a refused request leaves nothing to undo.
  pid_t target_pid = 0;
  if (spec.security.pid_mode == NamespaceMode::kTarget) {
    // Only a container of the same pod: another pod's processes are not this one's to see.
    absl::StatusOr<ContainerPtr> target = Get(spec.security.target_id);
    if (target.ok() && (*target)->sandbox_id != sandbox->id) {
      return absl::InvalidArgumentError(absl::StrCat(
          "namespace_options.target_id: container \"", spec.security.target_id,
          "\" is not in pod sandbox ", sandbox->id));
    }
    if (target.ok() && (*target)->state == Container::State::kRunning) target_pid = (*target)->pid;
  }
  absl::StatusOr<image::ImagePtr> image = images_->Resolve(spec.image);
  if (!image.ok()) {
    return absl::NotFoundError(absl::StrCat("image \"", spec.image, "\": ", image.status().message()));
  }
  auto config = config_();
  Container c;
  c.id = NewRandomId();
  c.sandbox_id = sandbox->id;
  c.spec = spec;
  c.created_at_ns = absl::ToUnixNanos(clock_.Now());
  c.image_id = (*image)->id;
  c.image_ref = (*image)->repo_digests.empty() ? (*image)->id : (*image)->repo_digests[0];
  // The name as asked for when it is one of the image's tags (normalised), else its first tag.
  c.image_name = (*image)->repo_tags.empty() ? (*image)->id : (*image)->repo_tags[0];
  if (absl::StatusOr<image::Reference> ref = image::ParseReference(spec.image);
      ref.ok() && ref->digest.empty() &&
      absl::c_linear_search((*image)->repo_tags, ref->TagRef())) {
    c.image_name = ref->TagRef();
  }
  c.chain_ids = (*image)->chain_ids;
  c.stop_signal = (*image)->config.stop_signal;
  c.runtime_handler = sandbox->runtime_handler;
  const std::string log_dir = sandbox->spec.log_directory.empty()
                                  ? absl::StrCat(config->root, "/logs/", sandbox->id)
                                  : sandbox->spec.log_directory;
  c.log_path = absl::StrCat(log_dir, "/", spec.log_path.empty() ? c.id + ".log" : spec.log_path);

  const std::string key = c.Key(*sandbox);
  RequestOrigin origin = caller;
  if (origin.fingerprint.empty()) origin.fingerprint = Fingerprint(sandbox->id, spec);
  steps.Step("validate");
  ASSIGN_OR_RETURN(std::optional<std::string> kept, names_.Reserve(key, c.id, origin));
  if (kept) {
    spdlog::info("container {} ({}): handed to the retry of the request that made it", *kept, key);
    return *kept;
  }
  steps.Step("reserve_name");
  auto lease = std::make_unique<image::ImageStore::Lease>(images_, c.chain_ids);
  // Recorded before anything is made: whatever happens next, a failure here or a berthd killed
  // here, Teardown of this record undoes it (now, or at the next start).
  if (absl::Status intended = store_.Intend(c.id, ContainerToJson(c)); !intended.ok()) {
    names_.Release(key, c.id);
    return intended;
  }
  steps.Step("record_intent");
  if (absl::Status made = Make(c, *sandbox, **image, target_pid, steps); !made.ok()) {
    store_.EndIntent(c.id, Teardown(c));
    names_.Release(key, c.id);
    return Annotate(made, absl::StrCat("create container ", spec.name));
  }
  const std::string id = c.id;
  auto published = std::make_shared<const Container>(std::move(c));
  {
    absl::MutexLock lock(&mu_);
    containers_[id] = published;
    leases_[id] = std::move(lease);
  }
  Publish(*published, ContainerEventType::kCreated);
  steps.Step("publish");
  if (!names_.Complete(key, id, origin)) {
    spdlog::warn("container {} ({}) is created, but its caller gave up: kept for a retry", id, key);
    return absl::DeadlineExceededError(
        absl::StrCat("container ", id, " is created, but the caller had gone"));
  }
  spdlog::info("container {} ({}) created", id, key);
  return id;
}

absl::Status ContainerManager::Make(Container& c, const Sandbox& sandbox,
                                    const image::ImageRecord& image, pid_t target_pid,
                                    StepTimer& steps) {
  RETURN_IF_ERROR(Failpoint("container.create.intent_recorded"));
  auto config = config_();
  // Root filesystem, then the spec (users resolve in it). The runtime makes the container at
  // StartContainer (CreateInRuntime), as containerd's task is: kubelet starts a container right
  // after creating it, and the create it waits on is then the mount, the spec and one record.
  const std::string dir = ContainerDir(c.id);
  std::vector<std::string> layer_dirs;
  for (const std::string& chain : c.chain_ids) layer_dirs.push_back(images_->LayerDir(chain) + "/diff");
  ASSIGN_OR_RETURN(ScopedMount rootfs, image::MountRootfs(dir, layer_dirs));
  const std::string rootfs_path = rootfs.target();
  rootfs.Release();  // Teardown unmounts it
  RETURN_IF_ERROR(Failpoint("container.create.rootfs_mounted"));
  steps.Step("rootfs_mount");

  ContainerSpecInput input{.container = &c,
                           .sandbox = &sandbox,
                           .image = &image.config,
                           .rootfs = rootfs_path,
                           .pod_dir = sandboxes_->PodDir(sandbox.id),
                           .sandbox_pid = sandbox.pid,
                           .target_pid = target_pid,
                           .cgroups_path = sandboxes_->CgroupsPathFor(sandbox, c.id),
                           .cgroups = sandboxes_->CgroupsFor(sandbox)};
  if (auto handler = config->runtimes.find(sandbox.runtime_handler);
      handler != config->runtimes.end()) {
    input.allowed_annotations = handler->second.allowed_annotations;
  }
  if (const SecuritySpec& sec = c.spec.security;
      options_.apparmor != nullptr && options_.apparmor->enabled() && !sec.privileged &&
      (sec.apparmor.empty() || sec.apparmor == "runtime/default")) {
    ASSIGN_OR_RETURN(input.apparmor_default, options_.apparmor->DefaultProfile());
  }
  ASSIGN_OR_RETURN(const std::string oci_spec, ContainerOciSpec(input));
  steps.Step("oci_spec");
  const nlohmann::json user = nlohmann::json::parse(oci_spec)["process"]["user"];
  c.uid = user.value("uid", 0);
  c.gid = user.value("gid", 0);
  c.supplemental_groups = user.value("additionalGids", std::vector<int64_t>());
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.json", oci_spec, 0600, Durability::kVolatile));
  const std::string log_dir = c.log_path.substr(0, c.log_path.rfind('/'));
  RETURN_IF_ERROR(MakeDirs(log_dir, 0755));
  RETURN_IF_ERROR(Failpoint("container.create.spec_written"));
  steps.Step("spec_write");

  RETURN_IF_ERROR(Persist(c));
  steps.Step("persist");
  return absl::OkStatus();
}

absl::StatusOr<bool> ContainerManager::CreateInRuntime(const Container& c, OciRuntime* runtime,
                                                       StepTimer& steps) {
  ASSIGN_OR_RETURN(SandboxPtr sandbox, sandboxes_->Get(c.sandbox_id));
  auto config = config_();
  MonitorPtr monitor = monitors_(runtime, *config);
  // berth-conmon has the runtime start it as it makes it: one runtime process instead of two.
  const bool start = monitor->Starts();
  const std::string dir = ContainerDir(c.id);
  ASSIGN_OR_RETURN(const pid_t pid, monitor->Create({.id = c.id,
                                                     .name = c.Key(*sandbox),
                                                     .bundle = dir,
                                                     .log_path = c.log_path,
                                                     .exit_dir = config->run_root + "/exits",
                                                     .persist_dir = MonitorDir(c.id),
                                                     .socket_dir = config->run_root + "/socks",
                                                     .log_size_max = config->monitor.log_size_max,
                                                     .tty = c.spec.tty,
                                                     .stdin = c.spec.stdin,
                                                     .stdin_once = c.spec.stdin_once,
                                                     .pod_id = c.sandbox_id,
                                                     // the pod's monitor: the pause's directory
                                                     .pod_dir = MonitorDir(c.sandbox_id),
                                                     .start = start}));
  const pid_t monitor_pid = ReadPidFile(dir + "/conmon-pidfile");
  RETURN_IF_ERROR(Failpoint("container.start.runtime_created"));
  steps.Step("runtime_create");
  // Recorded before the start (or RUNNING): a berthd killed from here on finds the process by
  // its record.
  RETURN_IF_ERROR(UpdateStatus(c.id, [&](Container& next) {
    next.pid = pid;
    next.monitor_pid = monitor_pid;
    return true;
  }));
  return start;
}

absl::Status ContainerManager::EndInRuntime(const Container& c) {
  absl::Status first;
  if (std::unique_ptr<OciRuntime> runtime = RuntimeFor(c.runtime_handler)) {
    first = runtime->Delete(c.id, /*force=*/true);
  } else {
    first = absl::FailedPreconditionError(absl::StrCat(
        "runtime handler \"", c.runtime_handler, "\" is no longer configured: the container "
        "cannot be deleted"));
  }
  // The monitor ends with its container; its exit file must land before the files go.
  EndMonitor(ContainerDir(c.id) + "/conmon-pidfile", c.id);
  return first;
}

absl::Status ContainerManager::Teardown(const Container& c) {
  absl::Status first;
  auto step = [&](absl::Status status) {
    if (!status.ok()) {
      spdlog::warn("container {}: {}", c.id, status.message());
      if (first.ok()) first = status;
    }
  };
  step(EndInRuntime(c));
  step(Failpoint("container.remove.runtime_deleted"));
  step(image::RemoveRootfs(ContainerDir(c.id)));
  step(Failpoint("container.remove.rootfs_removed"));
  step(RemoveMonitorFiles(c));
  return first;
}

absl::Status ContainerManager::RemoveMonitorFiles(const Container& c) {
  for (const std::string& path : {MonitorDir(c.id), ExitFile(c.id),
                                  absl::StrCat(config_()->run_root, "/socks/", c.id),
                                  ContainerDir(c.id) + "/conmon-pidfile"}) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return absl::InternalError(absl::StrCat("remove ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace berth::pod
