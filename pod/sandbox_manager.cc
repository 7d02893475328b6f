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

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS sandboxes(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  record TEXT NOT NULL);
)sql";

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) spdlog::warn("remove {}: {}", path, ec.message());
}

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

}  // namespace

SandboxManager::SandboxManager(SqliteDb* db, ConfigSource config, cni::NetworkPlugin* network,
                               Options options)
    : db_(db), config_(std::move(config)), network_(network), options_(std::move(options)) {}

std::string SandboxManager::PodDir(const std::string& id) const {
  return absl::StrCat(config_()->run_root, "/pods/", id);
}
std::string SandboxManager::BundleDir(const std::string& id) const {
  return absl::StrCat(config_()->root, "/sandboxes/", id);
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
                    .created_at_ns = absl::ToUnixNanos(absl::Now())});
}

std::shared_ptr<absl::Mutex> SandboxManager::OpLock(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto& m = op_locks_[id];
  if (!m) m = std::make_shared<absl::Mutex>();
  return m;
}

absl::Status SandboxManager::Persist(const Sandbox& s) {
  absl::MutexLock lock(&db_->mu());
  ASSIGN_OR_RETURN(SqliteStatement upsert, db_->Prepare(
      "INSERT INTO sandboxes(id, name, record) VALUES(?,?,?) "
      "ON CONFLICT(id) DO UPDATE SET record=excluded.record"));
  return Annotate(upsert.Bind(1, s.id).Bind(2, s.Key()).Bind(3, SandboxToJson(s)).Run(),
                  absl::StrCat("persist sandbox ", s.id));
}

absl::Status SandboxManager::Forget(const std::string& id) {
  absl::MutexLock lock(&db_->mu());
  ASSIGN_OR_RETURN(SqliteStatement del, db_->Prepare("DELETE FROM sandboxes WHERE id = ?"));
  return del.Bind(1, id).Run();
}

absl::Status SandboxManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<std::string> records,
                   db_->LoadTexts(kSchema, "SELECT record FROM sandboxes"));
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
    absl::MutexLock lock(&mu_);
    if (lease) leases_[id] = std::move(lease);
    names_[s.Key()] = id;
    sandboxes_[id] = std::make_shared<const Sandbox>(std::move(s));
  }
  spdlog::info("recovered {} pod sandbox(es)", loaded.size());
  return absl::OkStatus();
}

absl::StatusOr<std::string> SandboxManager::StartPause(Sandbox& s, const config::Config& config) {
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
  RETURN_IF_ERROR(WriteFileAtomic(bundle + "/config.json", spec, 0600));
  ConmonMonitor monitor(options_.monitor_path, runtime.get(), config.cgroup_manager == "systemd");
  const std::string monitor_dir = absl::StrCat(config.run_root, "/monitor/", s.id);
  absl::StatusOr<pid_t> pid = monitor.Create({.id = s.id,
                                              .name = s.Key(),
                                              .bundle = bundle,
                                              .log_path = monitor_dir + "/pause.log",
                                              .exit_dir = config.run_root + "/exits",
                                              .persist_dir = monitor_dir,
                                              .socket_dir = config.run_root + "/socks"});
  if (!pid.ok()) return Annotate(pid.status(), "start the pause container");
  if (absl::Status started = runtime->Start(s.id); !started.ok()) {
    (void)runtime->Delete(s.id, /*force=*/true);
    return Annotate(started, "start the pause container");
  }
  if (image_rootfs) image_rootfs->Release();  // the sandbox owns it now; Remove unmounts it
  return spec;
}

absl::StatusOr<std::string> SandboxManager::Run(const SandboxSpec& request) {
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
  s.created_at_ns = absl::ToUnixNanos(absl::Now());
  const std::string key = s.Key();
  {
    absl::MutexLock lock(&mu_);
    if (auto holder = names_.find(key); holder != names_.end()) {
      return absl::AlreadyExistsError(absl::StrCat("pod sandbox name \"", key,
                                                   "\" is reserved by sandbox ", holder->second));
    }
    names_[key] = s.id;
  }
  absl::Cleanup release_name = [&] {
    absl::MutexLock lock(&mu_);
    names_.erase(key);
  };
  std::optional<cni::NetworkConf> network;
  if (!spec.host_network) {
    absl::StatusOr<cni::NetworkConf> found = cni::FindDefaultNetwork(
        config->network.conf_dir, config->network.bin_dirs, config->network.default_network);
    if (!found.ok()) return found.status();
    network = *std::move(found);
  }
  // Each step undoes itself if a later one fails; the cleanups run in reverse order.
  const std::string pod_dir = PodDir(s.id);
  RETURN_IF_ERROR(WritePodFiles(pod_dir, spec.hostname, spec.dns));
  absl::Cleanup remove_pod_dir = [&] { RemoveTree(pod_dir); };
  std::optional<ScopedMount> shm;
  if (!spec.host_ipc) {
    absl::StatusOr<ScopedMount> mount = ScopedMount::Tmpfs(
        pod_dir + "/shm", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
    if (!mount.ok()) return mount.status();
    shm.emplace(*std::move(mount));
  }
  std::optional<cni::NetNs> netns;
  cni::AttachSpec attach{.container_id = s.id,
                         .netns_path = NetNsPath(s.id),
                         .args = {{"K8S_POD_NAMESPACE", spec.namespace_name},
                                  {"K8S_POD_NAME", spec.name},
                                  {"K8S_POD_INFRA_CONTAINER_ID", s.id},
                                  {"K8S_POD_UID", spec.uid}},
                         .port_mappings = spec.port_mappings};
  if (spec.dns) {
    attach.dns = cni::DnsConfig{spec.dns->servers, spec.dns->searches, spec.dns->options};
  }
  bool attached = false;
  absl::Cleanup detach = [&] {
    if (!attached) return;
    if (absl::Status detached = network_->Detach(attach); !detached.ok()) {
      spdlog::warn("sandbox {}: undoing a failed start: {}", s.id, detached.message());
    }
  };
  if (network) {
    absl::StatusOr<cni::NetNs> created = cni::NetNs::Create(NetNsPath(s.id));
    if (!created.ok()) return created.status();
    netns.emplace(*std::move(created));
    s.netns_path = netns->path();
    ASSIGN_OR_RETURN(cni::Attachment a, network_->Attach(*network, attach));
    attached = true;
    s.ips = a.ips;
    s.cni_result = a.result_json;
    if (!s.ips.empty()) {
      RETURN_IF_ERROR(
          WriteFileAtomic(pod_dir + "/hosts", HostsFile(spec.hostname, s.ips[0].Ip()), 0644));
    }
  }
  absl::Cleanup remove_bundle = [&] {
    if (absl::Status removed = image::RemoveRootfs(BundleDir(s.id)); !removed.ok()) {
      spdlog::warn("sandbox {}: undoing a failed start: {}", s.id, removed.message());
    }
  };
  // The pause container and what its monitor leaves (its files, exit file and attach socket
  // directory) go too if the start fails from here on.
  absl::Cleanup remove_pause = [&] {
    absl::Status deleted = RuntimeFor(*config, handler)->Delete(s.id, /*force=*/true);
    if (!deleted.ok() && !absl::IsNotFound(deleted)) {
      spdlog::warn("sandbox {}: undoing a failed start: {}", s.id, deleted.message());
    }
    std::error_code ec;
    for (const char* dir : {"/monitor/", "/exits/", "/socks/"}) {
      std::filesystem::remove_all(absl::StrCat(config->run_root, dir, s.id), ec);
      if (ec) spdlog::warn("sandbox {}: undoing a failed start: {}", s.id, ec.message());
    }
  };
  ASSIGN_OR_RETURN(s.oci_spec, StartPause(s, *config));
  absl::StatusOr<ContainerState> state = RuntimeFor(*config, handler)->State(s.id);
  if (state.ok()) s.pid = state->pid;
  RETURN_IF_ERROR(Persist(s));
  // From here on the store owns it all.
  std::move(release_name).Cancel();
  std::move(remove_pod_dir).Cancel();
  std::move(detach).Cancel();
  std::move(remove_bundle).Cancel();
  std::move(remove_pause).Cancel();
  if (shm) shm->Release();
  if (netns) netns->Release();
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
  spdlog::info("pod sandbox {} ({}) is ready", id, key);
  return id;
}

}  // namespace berth::pod
