#include "pod/orphans.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/mount.h"
#include "base/reaper.h"
#include "cni/netns.h"
#include "image/rootfs.h"
#include "pod/monitor.h"
#include "pod/runtime.h"

namespace berth::pod {
namespace {

namespace fs = std::filesystem;

// The id a path under one of berth's per-id directories belongs to: the first path element
// below `dir` ("<dir>/<id>/rootfs" -> id; exit files "<id>" or "<id>.tmp" -> id).
std::string IdUnder(const std::string& dir, const std::string& path) {
  if (!absl::StartsWith(path, dir + "/")) return "";
  std::string rest = path.substr(dir.size() + 1);
  rest = rest.substr(0, rest.find('/'));
  if (absl::EndsWith(rest, ".tmp")) rest.resize(rest.size() - 4);
  return rest;
}

void Warn(const absl::Status& s) {
  if (!s.ok()) spdlog::warn("orphan sweep: {}", s.message());
}

// An exec whose berthd was killed runs on (ExecSync has no monitor, and a session's runtime
// outlives it): end the process its work directory's pid file names, if that pid is still the
// process the file was written for, not a later one that got the number.
void EndExecProcess(const fs::path& work_dir) {
  const std::string pidfile = (work_dir / "pid").string();
  const pid_t pid = ReadPidFile(pidfile);
  struct stat st;
  if (pid <= 1 || ::stat(pidfile.c_str(), &st) != 0) return;
  const std::optional<std::chrono::milliseconds> age = ProcessAge(pid);
  if (!age) return;
  const int64_t started = static_cast<int64_t>(::time(nullptr)) - age->count() / 1000;
  if (started > st.st_mtim.tv_sec + 2) return;
  spdlog::info("orphan sweep: killing exec process {} of {}", pid, work_dir.string());
  ::kill(pid, SIGKILL);
}

}  // namespace

SweepReport SweepOrphans(const config::Config& config, const std::set<std::string>& known,
                         cni::NetworkPlugin* network) {
  SweepReport report;
  auto unknown = [&](const std::string& id) { return !id.empty() && !known.contains(id); };
  const std::string containers = config.root + "/containers";
  const std::string sandboxes = config.root + "/sandboxes";

  // Runtime state first: deleting a container ends its monitor and frees its cgroup. Only
  // containers whose bundle is one of ours: a runtime root may be shared with other tools.
  std::map<std::string, std::string> roots;  // root -> handler
  for (const auto& [name, handler] : config.runtimes) roots.emplace(handler.root, name);
  for (const auto& [root, handler] : roots) {
    std::unique_ptr<OciRuntime> runtime = RuntimeFor(config, handler);
    if (runtime == nullptr) continue;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      const std::string id = entry.path().filename().string();
      if (!entry.is_directory() || !unknown(id)) continue;
      absl::StatusOr<ContainerState> state = runtime->State(id);
      if (!state.ok()) continue;
      const std::string bundle = state->bundle;
      if (bundle != containers + "/" + id && bundle != sandboxes + "/" + id) continue;
      spdlog::info("orphan sweep: deleting runtime container {} ({})", id, bundle);
      if (absl::Status deleted = runtime->Delete(id, /*force=*/true); !deleted.ok()) {
        Warn(deleted);
        continue;
      }
      EndMonitor(bundle + "/conmon-pidfile", id);
      ++report.runtime_containers;
    }
  }

  // CNI attachments from the cache on root: what a reboot or an interrupted start left.
  if (network != nullptr) {
    for (const cni::AttachSpec& attach : network->CachedAttachments()) {
      if (!unknown(attach.container_id)) continue;
      spdlog::info("orphan sweep: CNI DEL for sandbox {}", attach.container_id);
      if (absl::Status detached = network->Detach(attach); !detached.ok()) {
        Warn(detached);
        continue;
      }
      ++report.network_attachments;
    }
  }

  // A CNI cache write that a kill cut short leaves its temporary file beside the entry (the
  // entry it was to replace, if any, is whole and was used above).
  for (const std::string& path : RemoveInterruptedWrites(config.root + "/cni-cache")) {
    spdlog::info("orphan sweep: removed {}", path);
    ++report.paths;
  }

  // Mounts: container and pause root filesystems, /dev/shm of pods, pinned namespaces.
  const std::string pods = config.run_root + "/pods";
  const std::string netns = config.run_root + "/netns";
  for (const std::string& dir : {containers, sandboxes, pods, netns}) {
    std::vector<std::string> points = MountPointsUnder(dir);
    for (auto it = points.rbegin(); it != points.rend(); ++it) {
      if (!unknown(IdUnder(dir, *it))) continue;
      if (absl::Status unmounted = Unmount(*it); !unmounted.ok()) {
        Warn(unmounted);
        continue;
      }
      ++report.mounts;
    }
  }

  // The per-id directories and files. Exec work directories belong to sessions that ended with
  // the berthd that had them; their processes end with them.
  for (const std::string& dir :
       {containers, sandboxes, config.root + "/logs", pods, netns, config.run_root + "/monitor",
        config.run_root + "/exits", config.run_root + "/socks", config.run_root + "/exec"}) {
    const bool all = dir == config.run_root + "/exec";
    std::error_code ec;
    std::vector<fs::path> stale;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (all || unknown(IdUnder(dir, entry.path().string()))) stale.push_back(entry.path());
      if (all) EndExecProcess(entry.path());
    }
    for (const fs::path& path : stale) {
      if (dir == config.run_root + "/monitor") {  // a pod's monitor, waiting for its pause
        EndPodMonitor(path.string(), path.filename().string(), std::chrono::milliseconds(0));
      }
      absl::Status removed;
      if (dir == netns) {
        removed = cni::RemoveNetNs(path.string());
      } else if (dir == containers || dir == sandboxes) {
        removed = image::RemoveRootfs(path.string());
      } else {
        fs::remove_all(path, ec);
        if (ec) removed = absl::InternalError(absl::StrCat("remove ", path.string(), ": ", ec.message()));
      }
      if (!removed.ok()) {
        Warn(removed);
        continue;
      }
      spdlog::info("orphan sweep: removed {}", path.string());
      ++report.paths;
    }
  }
  return report;
}

}  // namespace berth::pod
