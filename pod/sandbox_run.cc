// RunPodSandbox: the steps that make a pod sandbox, each after its intent is recorded.

#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/concurrently.h"
#include "base/errno_status.h"
#include "base/failpoint.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/mount.h"
#include "base/random_id.h"
#include "base/status_macros.h"
#include "base/steps.h"
#include "cni/conf.h"
#include "cni/netns.h"
#include "image/rootfs.h"
#include "nlohmann/json.hpp"
#include "pod/cgroup_support.h"
#include "pod/monitor.h"
#include "pod/oci_spec.h"
#include "pod/pod_files.h"
#include "pod/request_limits.h"
#include "pod/resources.h"
#include "pod/runtime.h"
#include "pod/sandbox_manager.h"

namespace berth::pod {
namespace {

absl::Status Validate(const SandboxSpec& spec, const config::Config& config,
                      const std::string& handler) {
  if (spec.name.empty()) return absl::InvalidArgumentError("metadata.name is empty");
  if (spec.namespace_name.empty()) return absl::InvalidArgumentError("metadata.namespace is empty");
  if (spec.uid.empty()) return absl::InvalidArgumentError("metadata.uid is empty");
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"metadata.name", &spec.name},
        {"metadata.namespace", &spec.namespace_name},
        {"metadata.uid", &spec.uid},
        {"hostname", &spec.hostname}}) {
    RETURN_IF_ERROR(CheckLength(field, *value, kMaxNameLength));
  }
  RETURN_IF_ERROR(CheckMetadata("labels", spec.labels));
  RETURN_IF_ERROR(CheckMetadata("annotations", spec.annotations));
  if (!spec.log_directory.empty()) {
    // kubelet's /var/log/pods/<namespace>_<name>_<uid>: a host directory it chose.
    if (spec.log_directory.front() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("log_directory \"", spec.log_directory, "\" must be absolute"));
    }
    RETURN_IF_ERROR(CheckConfinedPath("log_directory", spec.log_directory.substr(1)));
  }
  if (!config.runtimes.contains(handler)) {
    std::vector<std::string> names;
    for (const auto& [name, h] : config.runtimes) names.push_back(name);
    return absl::InvalidArgumentError(absl::StrCat("runtime handler \"", handler,
                                                   "\" is not configured (configured: ",
                                                   absl::StrJoin(names, ", "), ")"));
  }
  if (spec.pid_mode == NamespaceMode::kTarget) {
    return absl::InvalidArgumentError("linux.security_context.namespace_options.pid: TARGET is "
                                      "for containers, not pod sandboxes");
  }
  return absl::OkStatus();
}

// What a retry of the same RunPodSandbox has in common with the first request.
std::string Fingerprint(const SandboxSpec& spec) {
  return SandboxToJson(Sandbox{.spec = spec});
}

}  // namespace

cni::AttachSpec AttachSpecOf(const Sandbox& s) {
  cni::AttachSpec attach{.container_id = s.id,
                         .netns_path = s.netns_path,
                         .args = {{"K8S_POD_NAMESPACE", s.spec.namespace_name},
                                  {"K8S_POD_NAME", s.spec.name},
                                  {"K8S_POD_INFRA_CONTAINER_ID", s.id},
                                  {"K8S_POD_UID", s.spec.uid}},
                         .port_mappings = s.spec.port_mappings};
  if (s.spec.dns) {
    attach.dns = cni::DnsConfig{s.spec.dns->servers, s.spec.dns->searches, s.spec.dns->options};
  }
  return attach;
}

absl::StatusOr<std::string> SandboxManager::StartPause(Sandbox& s, const config::Config& config,
                                                       StepTimer& steps) {
  std::unique_ptr<OciRuntime> runtime = RuntimeFor(config, s.runtime_handler);
  PauseSpecOptions options;
  options.rootfs = options_.pause_rootfs;
  const std::string bundle = BundleDir(s.id);
  std::optional<ScopedMount> image_rootfs;
  if (!config.pause.image.empty()) {
    // pause.image: the pod's infra process runs from that image (pulled if missing), on an
    // overlay of its own.
    if (!options_.pause_image || options_.images == nullptr) {
      return absl::FailedPreconditionError("pause.image is set but no image service is wired");
    }
    absl::StatusOr<image::ImagePtr> image = options_.pause_image(config.pause.image);
    if (!image.ok()) return Annotate(image.status(), absl::StrCat("pause image ", config.pause.image));
    std::vector<std::string> layers;
    for (const std::string& chain : (*image)->chain_ids) {
      layers.push_back(options_.images->LayerDir(chain) + "/diff");
    }
    ASSIGN_OR_RETURN(ScopedMount mounted, image::MountRootfs(bundle, layers));
    image_rootfs.emplace(std::move(mounted));
    options.rootfs = image_rootfs->target();
    std::vector<std::string> args = (*image)->config.entrypoint;
    args.insert(args.end(), (*image)->config.cmd.begin(), (*image)->config.cmd.end());
    if (args.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("pause image ", config.pause.image,
                                                     " has neither ENTRYPOINT nor CMD"));
    }
    options.args = args;
    s.pause_layers = (*image)->chain_ids;
  }
  options.hostname = s.spec.hostname;
  options.netns_path = s.netns_path;
  options.host_ipc = s.spec.host_ipc;
  options.host_pid = s.spec.pid_mode == NamespaceMode::kNode;
  options.host_uts = s.spec.host_network;
  if (!s.spec.host_ipc) options.shm_path = PodDir(s.id) + "/shm";
  options.cgroups_path = CgroupsPathFor(s, s.id);
  options.cgroups = CgroupsFor(s);
  options.oom_score_adj = ClampOomScoreAdj(-998);
  options.sysctls = s.spec.sysctls;
  if (auto handler = config.runtimes.find(s.runtime_handler); handler != config.runtimes.end()) {
    options.annotations =
        AllowedAnnotations(s.spec.annotations, handler->second.allowed_annotations);
  }
  if (s.spec.resources) {
    for (auto& [key, value] : SandboxResourceAnnotations(*s.spec.resources)) {
      options.annotations[key] = value;
    }
  }
  options.annotations["io.kubernetes.cri.container-type"] = "sandbox";
  options.annotations["io.kubernetes.cri.sandbox-id"] = s.id;
  ASSIGN_OR_RETURN(std::string spec, PauseSpec(options));
  RETURN_IF_ERROR(MakeDirs(bundle, 0700));
  RETURN_IF_ERROR(WriteFileAtomic(bundle + "/config.json", spec, 0600, Durability::kVolatile));
  steps.Step("pause_bundle");
  MonitorPtr monitor = MonitorFor(runtime.get(), config);
  // berth-conmon has the runtime start it as it makes it (one `run --detach` instead of a create
  // and a start, one Go start-up less): it needs nothing of the network CNI is still setting up.
  const bool start = monitor->Starts();
  const std::string monitor_dir = MonitorDir(s.id);
  absl::StatusOr<pid_t> pid = monitor->Create({.id = s.id,
                                              .name = s.Key(),
                                              .bundle = bundle,
                                              .log_path = monitor_dir + "/pause.log",
                                              .exit_dir = config.run_root + "/exits",
                                              .persist_dir = monitor_dir,
                                              .socket_dir = config.run_root + "/socks",
                                              .pod_id = s.id,
                                              .pod_dir = monitor_dir,
                                              .start = start});
  if (!pid.ok()) return Annotate(pid.status(), "start the pause container");
  s.pid = *pid;
  steps.Step("pause_create");
  RETURN_IF_ERROR(Failpoint("sandbox.run.pause_created"));
  if (!start) {  // the runtime made the pause's process; start only lets it run
    RETURN_IF_ERROR(Annotate(runtime->Start(s.id), "start the pause container"));
    steps.Step("pause_start");
  }
  if (image_rootfs) image_rootfs->Release();  // Teardown unmounts it
  return spec;
}

absl::StatusOr<std::string> SandboxManager::Run(const SandboxSpec& request,
                                            const RequestOrigin& caller) {
  StepTimer steps("RunPodSandbox");
  WarmCgroupAttach();  // the pause container, then the pod's containers, will be attached soon
  auto config = config_();
  SandboxSpec spec = request;
  const std::string handler =
      spec.runtime_handler.empty() ? config->default_runtime : spec.runtime_handler;
  RETURN_IF_ERROR(Validate(spec, *config, handler));
  if (config->pause.image.empty() && ::access((options_.pause_rootfs + "/pause").c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the pause root filesystem ", options_.pause_rootfs,
                     " has no pause binary (is berth-pause installed?)"));
  }
  RequestOrigin origin = caller;
  if (origin.fingerprint.empty()) origin.fingerprint = Fingerprint(request);
  if (spec.hostname.empty()) {
    // Like containerd and cri-o: a pod that names no hostname gets the node's.
    char node[256] = {};
    ::gethostname(node, sizeof node - 1);
    spec.hostname = node;
  }
  Sandbox s;
  s.id = NewRandomId();
  s.spec = spec;
  s.runtime_handler = handler;
  s.created_at_ns = absl::ToUnixNanos(clock_.Now());
  const std::string key = s.Key();
  steps.Step("validate");
  ASSIGN_OR_RETURN(std::optional<std::string> kept, names_.Reserve(key, s.id, origin));
  if (kept) {
    spdlog::info("pod sandbox {} ({}): handed to the retry of the request that made it", *kept, key);
    return *kept;
  }
  steps.Step("reserve_name");
  std::optional<cni::NetworkConf> network;
  if (!spec.host_network) {
    absl::StatusOr<cni::NetworkConf> found = cni::FindDefaultNetwork(
        config->network.conf_dir, config->network.bin_dirs, config->network.default_network);
    if (!found.ok()) {
      names_.Release(key, s.id);
      return found.status();
    }
    network = *std::move(found);
    s.netns_path = NetNsPath(s.id);
  }
  // Recorded before anything is made: whatever happens next, a failure here or a berthd killed
  // here, Teardown of this record undoes it (now, or at the next start).
  if (absl::Status intended = store_.Intend(s.id, SandboxToJson(s)); !intended.ok()) {
    names_.Release(key, s.id);
    return intended;
  }
  steps.Step("record_intent");
  if (absl::Status made = Make(s, *config, network, steps); !made.ok()) {
    store_.EndIntent(s.id, Teardown(s));
    names_.Release(key, s.id);
    return made;
  }
  const std::string id = s.id;
  std::unique_ptr<image::ImageStore::Lease> lease;  // taken outside our lock
  if (!s.pause_layers.empty() && options_.images != nullptr) {
    lease = std::make_unique<image::ImageStore::Lease>(options_.images, s.pause_layers);
  }
  {
    absl::MutexLock lock(&mu_);
    if (lease) leases_[id] = std::move(lease);
    sandboxes_[id] = std::make_shared<const Sandbox>(std::move(s));
  }
  Publish(id, ContainerEventType::kCreated);
  Publish(id, ContainerEventType::kStarted);
  steps.Step("publish");
  if (!names_.Complete(key, id, origin)) {
    spdlog::warn("pod sandbox {} ({}) is ready, but its caller gave up: kept for a retry", id, key);
    return absl::DeadlineExceededError(
        absl::StrCat("pod sandbox ", id, " is ready, but the caller had gone"));
  }
  spdlog::info("pod sandbox {} ({}) is ready", id, key);
  return id;
}

absl::Status SandboxManager::Make(Sandbox& s, const config::Config& config,
                                  const std::optional<cni::NetworkConf>& network,
                                  StepTimer& steps) {
  RETURN_IF_ERROR(Failpoint("sandbox.run.intent_recorded"));
  const SandboxSpec& spec = s.spec;
  const std::string pod_dir = PodDir(s.id);
  RETURN_IF_ERROR(WritePodFiles(pod_dir, spec.hostname, spec.dns));
  RETURN_IF_ERROR(Failpoint("sandbox.run.pod_files_written"));
  steps.Step("pod_files");
  if (!spec.host_ipc) {
    ASSIGN_OR_RETURN(ScopedMount shm, ScopedMount::Tmpfs(pod_dir + "/shm",
                                                         MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                                         "mode=1777,size=65536k"));
    shm.Release();  // Teardown unmounts it
    RETURN_IF_ERROR(Failpoint("sandbox.run.shm_mounted"));
    steps.Step("shm_mount");
  }
  // CNI ADD, the long pole, runs while the pause container is made and started: the pause only
  // needs the namespace to exist, and nothing of the pod runs before both are done. Whatever
  // either made is undone by Teardown if the other fails.
  std::optional<absl::StatusOr<cni::Attachment>> attached;
  absl::StatusOr<std::string> pause;
  auto start_pause = [&] { pause = StartPause(s, config, steps); };
  if (network) {
    ASSIGN_OR_RETURN(cni::NetNs netns, cni::NetNs::Create(s.netns_path));
    netns.Release();
    RETURN_IF_ERROR(Failpoint("sandbox.run.netns_created"));
    steps.Step("netns");
    Concurrently(
        [&, attach_spec = AttachSpecOf(s)] {
          StepTimer attach_steps("RunPodSandbox");
          attached = network_->Attach(*network, attach_spec);
          attach_steps.Step("cni_add");
        },
        start_pause);
    steps.Step("cni_add_wait");
    RETURN_IF_ERROR(attached->status());
    s.ips = (*attached)->ips;
    s.cni_result = (*attached)->result_json;
    RETURN_IF_ERROR(Failpoint("sandbox.run.network_attached"));
  } else {
    start_pause();
  }
  RETURN_IF_ERROR(pause.status());
  s.oci_spec = *std::move(pause);
  RETURN_IF_ERROR(Failpoint("sandbox.run.pause_started"));
  if (!s.ips.empty()) {
    RETURN_IF_ERROR(WriteFileAtomic(pod_dir + "/hosts", HostsFile(spec.hostname, s.ips[0].Ip()),
                                    0644, Durability::kVolatile));
  }
  RETURN_IF_ERROR(Persist(s));
  steps.Step("persist");
  return absl::OkStatus();
}

}  // namespace berth::pod
