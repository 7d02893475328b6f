#include "pod/container_manager.h"

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/random_id.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "absl/algorithm/container.h"
#include "image/reference.h"
#include "image/rootfs.h"
#include "pod/apparmor.h"
#include "pod/container_spec.h"
#include "pod/lookup.h"
#include "pod/request_limits.h"
#include "nlohmann/json.hpp"
#include "pod/runtime.h"


namespace berth::pod {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS containers(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  sandbox_id TEXT NOT NULL,
  record TEXT NOT NULL);
)sql";

// Whether `pid` is still the monitor of container `id`: after a reboot or a long time the pid
// may belong to another process, so its command line must name the container.
bool MonitorAlive(pid_t pid, const std::string& id) {
  if (pid <= 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return cmdline.find(id) != std::string::npos;
}

pid_t ReadPid(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  return (in >> pid) ? static_cast<pid_t>(pid) : 0;
}

}  // namespace

ContainerManager::ContainerManager(SqliteDb* db, ConfigSource config, SandboxManager* sandboxes,
                                   image::ImageStore* images, EventBus* events, Options options)
    : db_(db),
      config_(std::move(config)),
      sandboxes_(sandboxes),
      images_(images),
      events_(events),
      options_(std::move(options)) {}

ContainerManager::~ContainerManager() { Shutdown(); }

void ContainerManager::Shutdown() {
  if (watcher_.joinable()) {
    watcher_.request_stop();
    watcher_.join();
  }
}

std::string ContainerManager::ContainerDir(const std::string& id) const {
  return absl::StrCat(config_()->root, "/containers/", id);
}
std::string ContainerManager::MonitorDir(const std::string& id) const {
  return absl::StrCat(config_()->run_root, "/monitor/", id);
}
std::string ContainerManager::ExitFile(const std::string& id) const {
  return absl::StrCat(config_()->run_root, "/exits/", id);
}

std::unique_ptr<OciRuntime> ContainerManager::RuntimeFor(const std::string& handler) const {
  return pod::RuntimeFor(*config_(), handler);
}

std::shared_ptr<absl::Mutex> ContainerManager::OpLock(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto& m = op_locks_[id];
  if (!m) m = std::make_shared<absl::Mutex>();
  return m;
}

std::shared_ptr<absl::Mutex> ContainerManager::StartLock(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto& m = start_locks_[id];
  if (!m) m = std::make_shared<absl::Mutex>();
  return m;
}

std::string ContainerManager::KeyOf(const Container& c) const {
  absl::StatusOr<SandboxPtr> sandbox = sandboxes_->Get(c.sandbox_id);
  if (!sandbox.ok()) return absl::StrCat(c.spec.name, "_", c.sandbox_id, "_", c.spec.attempt);
  return c.Key(**sandbox);
}

absl::Status ContainerManager::Persist(const Container& c) {
  absl::MutexLock lock(&db_->mu());
  ASSIGN_OR_RETURN(SqliteStatement upsert, db_->Prepare(
      "INSERT INTO containers(id, name, sandbox_id, record) VALUES(?,?,?,?) "
      "ON CONFLICT(id) DO UPDATE SET record=excluded.record"));
  return Annotate(
      upsert.Bind(1, c.id).Bind(2, KeyOf(c)).Bind(3, c.sandbox_id).Bind(4, ContainerToJson(c)).Run(),
      absl::StrCat("persist container ", c.id));
}

absl::Status ContainerManager::Forget(const std::string& id) {
  absl::MutexLock lock(&db_->mu());
  ASSIGN_OR_RETURN(SqliteStatement del, db_->Prepare("DELETE FROM containers WHERE id = ?"));
  return del.Bind(1, id).Run();
}

void ContainerManager::Publish(const Container& c, ContainerEventType type) {
  if (events_ == nullptr) return;
  events_->Publish({.id = c.id, .sandbox_id = c.sandbox_id, .type = type,
                    .created_at_ns = absl::ToUnixNanos(absl::Now())});
}

absl::Status ContainerManager::UpdateStatus(const std::string& id,
                                            const std::function<bool(Container&)>& fn) {
  absl::MutexLock update(&update_mu_);
  ContainerPtr current;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = containers_.find(id);
    if (it == containers_.end()) return absl::NotFoundError(absl::StrCat("container ", id, " not found"));
    current = it->second;
  }
  Container next = *current;
  if (!fn(next)) return absl::OkStatus();
  RETURN_IF_ERROR(Persist(next));
  const bool stopped = current->state != Container::State::kExited &&
                       next.state == Container::State::kExited;
  const bool started = current->state != Container::State::kRunning &&
                       next.state == Container::State::kRunning;
  auto published = std::make_shared<const Container>(std::move(next));
  {
    absl::MutexLock lock(&mu_);
    containers_[id] = published;
  }
  if (started) Publish(*published, ContainerEventType::kStarted);
  if (stopped) Publish(*published, ContainerEventType::kStopped);
  return absl::OkStatus();
}

void ContainerManager::RecordExit(const std::string& id, bool monitor_gone) {
  const std::string exit_file = ExitFile(id);
  absl::StatusOr<std::string> text = ReadFile(exit_file);
  int code = 0;
  const bool have_code =
      text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &code);
  if (!have_code && !monitor_gone) return;  // not (completely) written yet
  const bool oom = ::access((MonitorDir(id) + "/oom").c_str(), F_OK) == 0;
  std::shared_ptr<absl::Mutex> start = StartLock(id);
  absl::MutexLock start_lock(start.get());  // a Start in flight records RUNNING first
  int64_t finished = absl::ToUnixNanos(absl::Now());
  struct stat st;
  if (have_code && ::stat(exit_file.c_str(), &st) == 0) {
    finished = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  absl::Status s = UpdateStatus(id, [&](Container& c) {
    if (c.state == Container::State::kExited) return false;
    c.state = Container::State::kExited;
    c.finished_at_ns = finished;
    if (have_code) {
      c.exit_code = code;
      c.reason = oom ? "OOMKilled" : code == 0 ? "Completed" : "Error";
    } else {
      c.exit_code = 255;
      c.reason = "Error";
      c.message = "the container's monitor exited without recording an exit code";
    }
    return true;
  });
  if (!s.ok() && !absl::IsNotFound(s)) spdlog::error("container {}: record exit: {}", id, s.message());
}

bool ContainerManager::WaitForExitFile(const std::string& id,
                                       std::chrono::milliseconds timeout) const {
  const std::string path = ExitFile(id);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (::access(path.c_str(), F_OK) == 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void ContainerManager::CheckMonitors() {
  std::vector<ContainerPtr> live;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [id, c] : containers_) {
      if (c->state == Container::State::kRunning || c->state == Container::State::kCreated) {
        live.push_back(c);
      }
    }
  }
  for (const ContainerPtr& c : live) {
    if (::access(ExitFile(c->id).c_str(), F_OK) == 0) {
      RecordExit(c->id, false);
    } else if (c->monitor_pid > 0 && !MonitorAlive(c->monitor_pid, c->id)) {
      // The exit file may land just after the monitor's pid is gone: look once more.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      RecordExit(c->id, ::access(ExitFile(c->id).c_str(), F_OK) != 0);
    }
  }
}

void ContainerManager::WatchExits(std::stop_token stop) {
  const std::string dir = config_()->run_root + "/exits";
  (void)MakeDirs(dir, 0700);
  UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!fd.valid() || ::inotify_add_watch(fd.get(), dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    spdlog::error("watch {}: {}; exits are noticed by polling", dir, std::strerror(errno));
  }
  auto last_check = std::chrono::steady_clock::now();
  alignas(inotify_event) char buf[4096];
  while (!stop.stop_requested()) {
    pollfd p{fd.get(), POLLIN, 0};
    ::poll(&p, 1, 200);
    ssize_t n;
    while (fd.valid() && (n = ::read(fd.get(), buf, sizeof buf)) > 0) {
      for (char* at = buf; at < buf + n;) {
        auto* event = reinterpret_cast<inotify_event*>(at);
        at += sizeof(inotify_event) + event->len;
        if (event->len == 0) continue;
        const std::string name = event->name;
        if (absl::EndsWith(name, ".tmp")) continue;
        bool known;
        {
          absl::ReaderMutexLock lock(&mu_);
          known = containers_.contains(name);
        }
        if (known) {
          RecordExit(name, false);
        } else {
          sandboxes_->OnPauseExit(name);
        }
      }
    }
    if (std::chrono::steady_clock::now() - last_check > std::chrono::seconds(2)) {
      CheckMonitors();
      last_check = std::chrono::steady_clock::now();
    }
  }
}

absl::Status ContainerManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<std::string> records,
                   db_->LoadTexts(kSchema, "SELECT record FROM containers"));
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
    // Leases take the image store's lock: never while holding ours.
    auto lease = std::make_unique<image::ImageStore::Lease>(images_, c.chain_ids);
    absl::MutexLock lock(&mu_);
    names_[sandbox.ok() ? c.Key(**sandbox) : absl::StrCat(c.spec.name, "_", c.sandbox_id)] = id;
    leases_[id] = std::move(lease);
    containers_[id] = std::make_shared<const Container>(std::move(c));
  }
  // Exits that happened while berthd was down, and monitors that are gone (a reboot empties
  // run_root: no exit files, no monitors).
  int settled = 0;
  for (const ContainerPtr& c : List()) {
    if (c->state == Container::State::kExited) continue;
    if (::access(ExitFile(c->id).c_str(), F_OK) == 0) {
      RecordExit(c->id, false);
      ++settled;
    } else if (!MonitorAlive(c->monitor_pid, c->id)) {
      RecordExit(c->id, true);
      ++settled;
    }
  }
  spdlog::info("recovered {} container(s), {} of them exited while berthd was down",
               loaded.size(), settled);
  watcher_ = std::jthread([this](std::stop_token stop) { WatchExits(stop); });
  return absl::OkStatus();
}

absl::StatusOr<ContainerPtr> ContainerManager::Get(const std::string& id) const {
  absl::ReaderMutexLock lock(&mu_);
  return FindByIdOrPrefix(containers_, id, "container");
}

std::vector<ContainerPtr> ContainerManager::List() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<ContainerPtr> out;
  out.reserve(containers_.size());
  for (const auto& [id, c] : containers_) out.push_back(c);
  return out;
}

absl::StatusOr<std::string> ContainerManager::Create(const std::string& sandbox_id,
                                                     const ContainerSpec& spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("config.metadata.name is empty");
  if (spec.image.empty()) return absl::InvalidArgumentError("config.image.image is empty");
  RETURN_IF_ERROR(CheckLength("config.metadata.name", spec.name, kMaxNameLength));
  RETURN_IF_ERROR(CheckMetadata("config.labels", spec.labels));
  RETURN_IF_ERROR(CheckMetadata("config.annotations", spec.annotations));
  // kubelet's "<container name>/<restart count>.log": it must stay in the pod's log directory.
  RETURN_IF_ERROR(CheckConfinedPath("config.log_path", spec.log_path));
  ASSIGN_OR_RETURN(SandboxPtr sandbox, sandboxes_->Get(sandbox_id));
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
  c.created_at_ns = absl::ToUnixNanos(absl::Now());
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
  {
    absl::MutexLock lock(&mu_);
    if (auto holder = names_.find(key); holder != names_.end()) {
      return absl::AlreadyExistsError(
          absl::StrCat("container name \"", key, "\" is reserved by container ", holder->second));
    }
    names_[key] = c.id;
  }
  absl::Cleanup release_name = [&] {
    absl::MutexLock lock(&mu_);
    names_.erase(key);
  };
  auto lease = std::make_unique<image::ImageStore::Lease>(images_, c.chain_ids);

  // Root filesystem, then the spec (users resolve in it), then the monitor creates it.
  const std::string dir = ContainerDir(c.id);
  absl::Cleanup remove_dir = [&] { (void)image::RemoveRootfs(dir); };
  std::vector<std::string> layer_dirs;
  for (const std::string& chain : c.chain_ids) layer_dirs.push_back(images_->LayerDir(chain) + "/diff");
  ASSIGN_OR_RETURN(ScopedMount rootfs, image::MountRootfs(dir, layer_dirs));

  ContainerSpecInput input{.container = &c,
                           .sandbox = sandbox.get(),
                           .image = &(*image)->config,
                           .rootfs = rootfs.target(),
                           .pod_dir = sandboxes_->PodDir(sandbox->id),
                           .sandbox_pid = sandbox->pid,
                           .target_pid = target_pid,
                           .cgroups_path = sandboxes_->CgroupsPathFor(*sandbox, c.id),
                           .cgroups = sandboxes_->CgroupsFor(*sandbox)};
  if (auto handler = config->runtimes.find(sandbox->runtime_handler);
      handler != config->runtimes.end()) {
    input.allowed_annotations = handler->second.allowed_annotations;
  }
  if (const SecuritySpec& sec = c.spec.security;
      options_.apparmor != nullptr && options_.apparmor->enabled() && !sec.privileged &&
      (sec.apparmor.empty() || sec.apparmor == "runtime/default")) {
    absl::StatusOr<std::string> profile = options_.apparmor->DefaultProfile();
    if (!profile.ok()) return Annotate(profile.status(), absl::StrCat("create container ", spec.name));
    input.apparmor_default = *profile;
  }
  absl::StatusOr<std::string> oci = ContainerOciSpec(input);
  if (!oci.ok()) return Annotate(oci.status(), absl::StrCat("create container ", spec.name));
  c.oci_spec = *oci;
  const nlohmann::json user = nlohmann::json::parse(c.oci_spec)["process"]["user"];
  c.uid = user.value("uid", 0);
  c.gid = user.value("gid", 0);
  c.supplemental_groups = user.value("additionalGids", std::vector<int64_t>());
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/config.json", c.oci_spec, 0600));
  RETURN_IF_ERROR(MakeDirs(log_dir, 0755));

  std::unique_ptr<OciRuntime> runtime = RuntimeFor(c.runtime_handler);
  if (runtime == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("runtime handler \"", c.runtime_handler, "\" is no longer configured"));
  }
  ConmonMonitor monitor(options_.monitor_path, runtime.get(), config->cgroup_manager == "systemd");
  absl::Cleanup remove_monitor_files = [&] {
    std::error_code ec;
    std::filesystem::remove_all(MonitorDir(c.id), ec);
    std::filesystem::remove(ExitFile(c.id), ec);
  };
  absl::StatusOr<pid_t> pid = monitor.Create({.id = c.id,
                                              .name = key,
                                              .bundle = dir,
                                              .log_path = c.log_path,
                                              .exit_dir = config->run_root + "/exits",
                                              .persist_dir = MonitorDir(c.id),
                                              .socket_dir = config->run_root + "/socks",
                                              .log_size_max = config->monitor.log_size_max,
                                              .tty = spec.tty,
                                              .stdin = spec.stdin,
                                              .stdin_once = spec.stdin_once});
  if (!pid.ok()) {
    (void)runtime->Delete(c.id, /*force=*/true);
    return Annotate(pid.status(), absl::StrCat("create container ", spec.name));
  }
  c.pid = *pid;
  c.monitor_pid = ReadPid(dir + "/conmon-pidfile");
  if (absl::Status persisted = Persist(c); !persisted.ok()) {
    (void)runtime->Delete(c.id, /*force=*/true);
    return persisted;
  }
  // From here on the store owns it all.
  std::move(release_name).Cancel();
  std::move(remove_dir).Cancel();
  std::move(remove_monitor_files).Cancel();
  rootfs.Release();
  const std::string id = c.id;
  auto published = std::make_shared<const Container>(std::move(c));
  {
    absl::MutexLock lock(&mu_);
    containers_[id] = published;
    leases_[id] = std::move(lease);
  }
  Publish(*published, ContainerEventType::kCreated);
  spdlog::info("container {} ({}) created", id, key);
  return id;
}

}  // namespace berth::pod
