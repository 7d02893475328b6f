#include "test/e2e/leaks.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "test/e2e/pod_cgroup.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The id an entry of a per-id directory belongs to: "<id>", "<id>.tmp", "<id>-eth0.json".
std::string IdOf(std::string name) {
  if (absl::EndsWith(name, ".tmp")) name.resize(name.size() - 4);
  return name.substr(0, name.find('-'));
}

bool MentionsAny(const std::string& text, const std::set<std::string>& ids) {
  return std::any_of(ids.begin(), ids.end(),
                     [&](const std::string& id) { return absl::StrContains(text, id); });
}

void PerIdEntries(const BerthDaemon& daemon, const LeakScope& scope,
                  std::vector<std::string>& out) {
  std::vector<std::string> dirs = {daemon.root() + "/containers", daemon.root() + "/sandboxes",
                                   daemon.root() + "/cni-cache",  daemon.run_root() + "/pods",
                                   daemon.run_root() + "/netns",  daemon.run_root() + "/monitor",
                                   daemon.run_root() + "/exits",  daemon.run_root() + "/socks",
                                   daemon.run_root() + "/runc",   daemon.root() + "/logs"};
  dirs.insert(dirs.end(), scope.runtime_roots.begin(), scope.runtime_roots.end());
  for (const std::string& dir : dirs) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      // The temporary file of a write that was cut short is a leak of whomever it is.
      if (!scope.live.contains(IdOf(name)) || absl::StrContains(name, ".tmp.")) {
        out.push_back("entry " + e.path().string());
      }
    }
  }
  // Exec sessions end with the call (or the berthd) that had them.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(daemon.run_root() + "/exec", ec)) {
    out.push_back("exec directory " + e.path().string());
  }
}

void Mounts(const BerthDaemon& daemon, const LeakScope& scope, std::vector<std::string>& out) {
  std::istringstream mountinfo(ReadAll("/proc/self/mountinfo"));
  for (std::string line; std::getline(mountinfo, line);) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 5 || !absl::StartsWith(fields[4], daemon.dir() + "/")) continue;
    if (!MentionsAny(fields[4], scope.live)) out.push_back("mount " + fields[4]);
  }
}

// The parent pid from /proc/<pid>/status, "" if it is gone.
std::string ParentOf(const fs::path& proc) {
  std::istringstream status(ReadAll(proc / "status"));
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "PPid:")) return std::string(absl::StripAsciiWhitespace(rest));
  }
  return "";
}

// Monitors name berthd's directory (bundle, exit dir) on their command line; a process of a
// known id that is no longer live names it.
void Processes(const BerthDaemon& daemon, const LeakScope& scope, std::vector<std::string>& out) {
  std::set<std::string> dead;
  std::set_difference(scope.ids.begin(), scope.ids.end(), scope.live.begin(), scope.live.end(),
                      std::inserter(dead, dead.end()));
  const std::string self = std::to_string(::getpid());
  const std::string berthd = std::to_string(daemon.pid());
  const std::string berthd_cmdline = ReadAll(fs::path("/proc") / berthd / "cmdline");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos || pid == self || pid == berthd) {
      continue;
    }
    std::string cmdline = ReadAll(e.path() / "cmdline");
    // berthd starting a helper (a runtime delete after an exit runs in the background): forked,
    // not yet exec'd, it still has berthd's command line.
    if (cmdline == berthd_cmdline && ParentOf(e.path()) == berthd) continue;
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if ((absl::StrContains(cmdline, daemon.dir() + "/") && !MentionsAny(cmdline, scope.live)) ||
        MentionsAny(cmdline, dead)) {
      out.push_back(absl::StrCat("process ", pid, ": ", cmdline));
    }
  }
}

void Cgroups(const LeakScope& scope, std::vector<std::string>& out) {
  for (const std::string& hierarchy : CgroupHierarchies()) {
    const fs::path parent = hierarchy + scope.cgroup_parent;
    for (const std::string& id : scope.ids) {
      if (!scope.live.contains(id) && fs::exists(parent / id)) {
        out.push_back("cgroup " + (parent / id).string());
      }
    }
    if (scope.cgroup_parent.empty()) continue;
    std::error_code ec;
    for (const auto& child : fs::directory_iterator(parent, ec)) {
      const std::string name = child.path().filename().string();
      if (child.is_directory() && !scope.live.contains(name) && !scope.ids.contains(name)) {
        out.push_back("cgroup " + child.path().string());
      }
    }
    if (std::string procs = ReadAll(parent / "cgroup.procs"); !procs.empty()) {
      out.push_back(absl::StrCat("processes in ", parent.string(), ": ", procs));
    }
  }
}

// The first column of every row of `sql`; nothing when the table does not exist (yet).
std::vector<std::string> Column(sqlite3* db, const std::string& sql) {
  std::vector<std::string> rows;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) return rows;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    rows.emplace_back(text == nullptr ? "" : reinterpret_cast<const char*>(text));
  }
  sqlite3_finalize(stmt);
  return rows;
}

}  // namespace

std::vector<std::string> FindLeaks(const BerthDaemon& daemon, const LeakScope& scope) {
  std::vector<std::string> out;
  PerIdEntries(daemon, scope, out);
  Mounts(daemon, scope, out);
  for (const std::string& address : ReservedAddresses(daemon)) {
    if (!scope.live.contains(address.substr(address.rfind(' ') + 1))) out.push_back("IP " + address);
  }
  Processes(daemon, scope, out);
  Cgroups(scope, out);
  return out;
}

absl::StatusOr<std::set<std::string>> ListedIds(CriClient& cri) {
  using runtime::v1::RuntimeService;
  absl::StatusOr<runtime::v1::ListPodSandboxResponse> pods =
      cri.Call(&RuntimeService::Stub::ListPodSandbox, runtime::v1::ListPodSandboxRequest());
  if (!pods.ok()) return pods.status();
  absl::StatusOr<runtime::v1::ListContainersResponse> containers =
      cri.Call(&RuntimeService::Stub::ListContainers, runtime::v1::ListContainersRequest());
  if (!containers.ok()) return containers.status();
  std::set<std::string> ids;
  for (const auto& pod : pods->items()) ids.insert(pod.id());
  for (const auto& c : containers->containers()) ids.insert(c.id());
  return ids;
}

std::vector<std::string> ReservedAddresses(const BerthDaemon& daemon) {
  // host-local keeps a file per reserved address, named by it, holding the container id.
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(daemon.dir() + "/ipam", ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name == "lock" || absl::StartsWith(name, "last_reserved_ip")) {
      continue;
    }
    const std::string text = ReadAll(e.path());
    out.push_back(absl::StrCat(name, " of ", text.substr(0, text.find_first_of("\r\n"))));
  }
  return out;
}

std::vector<std::string> FindStoredLeaks(const BerthDaemon& daemon,
                                         const std::set<std::string>& live) {
  std::vector<std::string> out;
  const std::string path = daemon.root() + "/berth.db";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    out.push_back(absl::StrCat("open ", path, ": ", sqlite3_errmsg(db)));
    sqlite3_close(db);
    return out;
  }
  for (const char* table : {"sandboxes", "containers"}) {
    for (const std::string& id : Column(db, absl::StrCat("SELECT id FROM ", table))) {
      if (!live.contains(id)) out.push_back(absl::StrCat("row ", id, " in ", table));
    }
  }
  for (const std::string& intent : Column(db, "SELECT kind || ' ' || id FROM intents")) {
    out.push_back("intent " + intent);
  }
  std::set<std::string> layers;
  for (const std::string& chain : Column(db, "SELECT chain_id FROM layers")) {
    layers.insert(chain.substr(chain.find(':') + 1));
  }
  sqlite3_close(db);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(daemon.root() + "/tmp", ec)) {
    out.push_back("image store temporary " + e.path().string());
  }
  for (const auto& e : fs::directory_iterator(daemon.root() + "/layers", ec)) {
    if (!layers.contains(e.path().filename().string())) {
      out.push_back("unrecorded layer " + e.path().string());
    }
  }
  return out;
}

}  // namespace berth::testing
