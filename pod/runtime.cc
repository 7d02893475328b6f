#include "pod/runtime.h"

#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/mount.h"
#include "base/process.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace berth::pod {
namespace {

constexpr auto kRuntimeTimeout = std::chrono::minutes(2);

bool IsUnknownContainer(const std::string& stderr_text) {
  return absl::StrContains(stderr_text, "does not exist") ||
         absl::StrContains(stderr_text, "not found") ||
         absl::StrContains(stderr_text, "No such file or directory");
}

}  // namespace

absl::StatusOr<std::string> RuncRuntime::Run(const std::vector<std::string>& args,
                                             const std::string& stdin_data) {
  ProcessSpec spec;
  spec.argv = {path_, "--root", root_};
  if (systemd_cgroup_) spec.argv.push_back("--systemd-cgroup");
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  spec.timeout = kRuntimeTimeout;
  spec.stdin_data = stdin_data;
  // start, kill, delete, update and state leave no process behind (the container's processes
  // come from `create`, under its monitor): they can run below berthd's own threads.
  spec.nice = kHelperNice;
  ASSIGN_OR_RETURN(ProcessResult r, RunProcess(spec));
  if (r.exit_code != 0) {
    const std::string what = absl::StrCat(path_, " ", absl::StrJoin(args, " "), ": ",
                                          Tail(r.stderr_data.empty() ? r.stdout_data : r.stderr_data));
    return IsUnknownContainer(r.stderr_data) ? absl::NotFoundError(what)
                                             : absl::InternalError(what);
  }
  return r.stdout_data;
}

std::unique_ptr<OciRuntime> RuntimeFor(const config::Config& config, const std::string& handler) {
  auto it = config.runtimes.find(handler);
  if (it == config.runtimes.end()) return nullptr;
  return std::make_unique<RuncRuntime>(it->second.path, it->second.root,
                                       config.cgroup_manager == "systemd");
}

absl::Status RuncRuntime::Start(const std::string& id) { return Run({"start", id}).status(); }

absl::Status RuncRuntime::Kill(const std::string& id, int signal, bool all) {
  std::vector<std::string> args = {"kill"};
  if (all) args.push_back("--all");
  args.push_back(id);
  args.push_back(std::to_string(signal));
  return Run(args).status();
}

absl::Status RuncRuntime::Delete(const std::string& id, bool force) {
  // runc and crun keep a container's state in <root>/<id>, and delete removes that directory:
  // without it there is nothing to delete, and no need to start the runtime to hear so.
  std::error_code ec;
  if (!root_.empty() && !std::filesystem::exists(root_ + "/" + id, ec) && !ec) {
    return absl::OkStatus();
  }
  std::vector<std::string> args = {"delete"};
  if (force) args.push_back("--force");
  args.push_back(id);
  absl::Status s = Run(args).status();
  if (!s.ok()) return absl::IsNotFound(s) ? absl::OkStatus() : s;
  // runc 1.1 binds its own binary on a "runc.XXXXXX" file in the state directory while its init
  // starts, and unmounts it a moment later: one killed in between (an exec cut short by its
  // timeout or its client) leaves the mount, and runc delete, though it succeeds, leaves the
  // directory with it. Looked for only then: mountinfo is not read on every delete.
  const std::string state = root_ + "/" + id;
  if (root_.empty() || !std::filesystem::exists(state, ec)) return absl::OkStatus();
  for (const std::string& mount : MountPointsUnder(state)) {
    if (absl::StartsWith(std::filesystem::path(mount).filename().string(), "runc.")) {
      RETURN_IF_ERROR(Unmount(mount));
    }
  }
  std::filesystem::remove_all(state, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", state, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status RuncRuntime::Update(const std::string& id, const std::string& resources_json) {
  return Run({"update", "--resources", "-", id}, resources_json).status();
}

absl::StatusOr<ContainerState> RuncRuntime::State(const std::string& id) {
  ASSIGN_OR_RETURN(std::string out, Run({"state", id}));
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (!j.is_object()) return absl::InternalError(absl::StrCat(path_, " state ", id, ": bad JSON"));
  return ContainerState{j.value("status", ""), j.value("pid", 0), j.value("bundle", "")};
}

}  // namespace berth::pod
