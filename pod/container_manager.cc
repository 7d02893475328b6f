// The container store: records, lookups and status updates; where a container's things are.

#include "pod/container_manager.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "pod/lookup.h"
#include "pod/runtime.h"

namespace berth::pod {

ContainerManager::ContainerManager(SqliteDb* db, ConfigSource config, SandboxManager* sandboxes,
                                   image::ImageStore* images, EventBus* events, Options options)
    : db_(db),
      config_(std::move(config)),
      sandboxes_(sandboxes),
      images_(images),
      events_(events),
      options_(std::move(options)),
      runtimes_(options_.runtimes ? options_.runtimes : RuntimeFactory(pod::RuntimeFor)),
      monitors_(options_.monitors ? options_.monitors : ConmonMonitors(options_.monitor_path)),
      clock_(options_.clock ? *options_.clock : Clock::Real()),
      store_(db, "containers", "sandbox_id"),
      names_("container", options_.keep_abandoned, clock_) {}

ContainerManager::~ContainerManager() { Shutdown(); }

void ContainerManager::Shutdown() {
  if (watcher_ != nullptr) watcher_->Stop();
}

absl::StatusOr<std::string> ContainerManager::OciSpec(const Container& c) const {
  absl::StatusOr<std::string> spec = ReadFile(ContainerDir(c.id) + "/config.json");
  if (!spec.ok()) {
    return absl::InternalError(
        absl::StrCat("container ", c.id, ": read its OCI spec: ", spec.status().message()));
  }
  return spec;
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
  return runtimes_(*config_(), handler);
}

std::string ContainerManager::KeyOf(const Container& c) const {
  absl::StatusOr<SandboxPtr> sandbox = sandboxes_->Get(c.sandbox_id);
  if (!sandbox.ok()) return absl::StrCat(c.spec.name, "_", c.sandbox_id, "_", c.spec.attempt);
  return c.Key(**sandbox);
}

absl::Status ContainerManager::Persist(const Container& c) {
  return Annotate(store_.Put(c.id, KeyOf(c), c.sandbox_id, ContainerToJson(c)),
                  absl::StrCat("persist container ", c.id));
}

void ContainerManager::Publish(const Container& c, ContainerEventType type) {
  if (events_ == nullptr) return;
  events_->Publish({.id = c.id, .sandbox_id = c.sandbox_id, .type = type,
                    .created_at_ns = absl::ToUnixNanos(clock_.Now())});
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

void ContainerManager::RemoveExpired() {
  for (const std::string& id : names_.Expired()) {
    spdlog::info("container {}: no retry claimed it, removing it", id);
    if (absl::Status removed = Remove(id); !removed.ok()) {
      spdlog::warn("container {}: {}", id, removed.message());
    }
  }
  sandboxes_->RemoveExpired();
}

absl::StatusOr<ContainerPtr> ContainerManager::Get(const std::string& id) const {
  absl::ReaderMutexLock lock(&mu_);
  return FindByIdOrPrefix(containers_, id, "container");
}

std::vector<ContainerPtr> ContainerManager::List() const {
  std::vector<ContainerPtr> out;
  {
    absl::ReaderMutexLock lock(&mu_);
    out.reserve(containers_.size());
    for (const auto& [id, c] : containers_) out.push_back(c);
  }
  if (const std::set<std::string> kept = names_.Kept(); !kept.empty()) {
    std::erase_if(out, [&](const ContainerPtr& c) { return kept.contains(c->id); });
  }
  return out;
}

std::vector<std::string> ContainerManager::Ids() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [id, c] : containers_) out.push_back(id);
  return out;
}

}  // namespace berth::pod
