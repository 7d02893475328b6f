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

// How often the watcher looks at monitors that may have died without an exit file, and at
// results kept for retries that may have expired.
constexpr auto kCheckEvery = std::chrono::seconds(2);

}  // namespace

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
      store_(db, "containers", "sandbox_id"),
      names_("container", options_.keep_abandoned) {}

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
  {
    absl::MutexLock lock(&mu_);
    if (auto it = starting_.find(id); it != starting_.end()) {
      // A Start in flight records RUNNING first, then this exit: not waited for here, so that
      // the watcher never blocks behind a runtime call.
      it->second = it->second.value_or(false) || monitor_gone;
      return;
    }
  }
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

bool ContainerManager::WaitExited(const std::string& id, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto exited = [this, &id]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto it = containers_.find(id);
    return it == containers_.end() || it->second->state == Container::State::kExited;
  };
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    // The watcher records the exit the moment inotify reports the exit file; the slices are
    // for a host where inotify could not be set up.
    const auto slice = std::min<std::chrono::nanoseconds>(left, std::chrono::seconds(1));
    {
      absl::ReaderMutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&exited), absl::FromChrono(slice))) return true;
    }
    if (::access(ExitFile(id).c_str(), F_OK) == 0) RecordExit(id, false);
    if (std::chrono::steady_clock::now() >= deadline) {
      absl::ReaderMutexLock lock(&mu_);
      return exited();
    }
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
    if (std::chrono::steady_clock::now() - last_check > kCheckEvery) {
      CheckMonitors();
      for (const std::string& id : names_.Expired()) {
        spdlog::info("container {}: no retry claimed it, removing it", id);
        if (absl::Status removed = Remove(id); !removed.ok()) {
          spdlog::warn("container {}: {}", id, removed.message());
        }
      }
      sandboxes_->RemoveExpired();
      last_check = std::chrono::steady_clock::now();
    }
  }
}

absl::Status ContainerManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<std::string> records, store_.Load());
  // Creates that were under way when berthd stopped: undone before anything else looks.
  store_.UndoIntents([this](const std::string& record) {
    ASSIGN_OR_RETURN(Container c, ContainerFromJson(record));
    return Teardown(c);
  });
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
    names_.Hold(sandbox.ok() ? c.Key(**sandbox) : absl::StrCat(c.spec.name, "_", c.sandbox_id), id);
    // Leases take the image store's lock: never while holding ours.
    auto lease = std::make_unique<image::ImageStore::Lease>(images_, c.chain_ids);
    absl::MutexLock lock(&mu_);
    leases_[id] = std::move(lease);
    containers_[id] = std::make_shared<const Container>(std::move(c));
  }
  // Exits that happened while berthd was down, and monitors that are gone (a reboot empties
  // run_root: no exit files, no monitors); starts that berthd did not see through.
  int settled = 0;
  for (const ContainerPtr& c : List()) {
    if (c->state == Container::State::kExited) continue;
    if (::access(ExitFile(c->id).c_str(), F_OK) == 0) {
      RecordExit(c->id, false);
      ++settled;
    } else if (!MonitorAlive(c->monitor_pid, c->id)) {
      RecordExit(c->id, true);
      ++settled;
    } else if (c->state == Container::State::kCreated) {
      std::unique_ptr<OciRuntime> runtime = RuntimeFor(c->runtime_handler);
      absl::StatusOr<ContainerState> state =
          runtime ? runtime->State(c->id) : absl::NotFoundError("no runtime");
      if (state.ok() && state->status == "running") {
        RETURN_IF_ERROR(UpdateStatus(c->id, [&](Container& next) {
          next.state = Container::State::kRunning;
          next.started_at_ns = absl::ToUnixNanos(absl::Now());
          return true;
        }));
        spdlog::info("container {}: started while berthd was going down, now RUNNING", c->id);
        ++settled;
      }
    }
  }
  spdlog::info("recovered {} container(s), {} of them settled", loaded.size(), settled);
  watcher_ = std::jthread([this](std::stop_token stop) { WatchExits(stop); });
  return absl::OkStatus();
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
