#include "cri/node_check.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file_util.h"
#include "base/process.h"
#include "cni/conf.h"
#include "cri/helpers.h"
#include "pod/cgroup_support.h"

namespace berth::cri {
namespace {

using Level = NodeFinding::Level;

// `path`, or the nearest directory above it that exists (what berthd would make it in).
std::string NearestExisting(std::string path) {
  while (::access(path.c_str(), F_OK) != 0 && path != "/") path = DirName(path);
  return path;
}

bool Executable(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

void CheckRuntimes(const config::Config& config, std::vector<NodeFinding>* out) {
  for (const auto& [name, handler] : config.runtimes) {
    const bool is_default = name == config.default_runtime;
    const Level missing = is_default ? Level::kFail : Level::kWarn;
    const std::string what = absl::StrCat("runtime ", name, is_default ? " (default)" : "");
    if (!Executable(handler.path)) {
      out->push_back({missing, what,
                      absl::StrCat(handler.path, " is not an executable file: ",
                                   is_default ? "no pod can start"
                                              : "pods asking for this handler cannot start")});
      continue;
    }
    absl::StatusOr<ProcessResult> version = RunProcess(
        {.argv = {handler.path, "--version"}, .timeout = std::chrono::seconds(10)});
    if (!version.ok() || version->exit_code != 0) {
      out->push_back({missing, what,
                      absl::StrCat(handler.path, " --version failed: ",
                                   version.ok() ? Tail(version->stderr_data, 300)
                                                : std::string(version.status().message()))});
      continue;
    }
    const std::string first = std::string(absl::StripAsciiWhitespace(
        std::vector<std::string>(absl::StrSplit(version->stdout_data, '\n'))[0]));
    out->push_back({Level::kOk, what, absl::StrCat(first, " (", handler.path, ")")});
  }
}

void CheckOverlay(const config::Config& config, std::vector<NodeFinding>* out) {
  absl::StatusOr<std::string> filesystems = ReadFile("/proc/filesystems");
  const bool listed = filesystems.ok() && absl::StrContains(*filesystems, "\toverlay\n");
  if (::geteuid() != 0) {
    out->push_back({listed ? Level::kOk : Level::kWarn, "overlayfs",
                    listed ? "listed in /proc/filesystems (not mounted: not root)"
                           : "not in /proc/filesystems (the module may load on first use)"});
    return;
  }
  // The real test: an overlay with a lower, an upper and a work directory, mounted and gone, on
  // the file system of root (where layers and containers' upper directories live), or of the
  // nearest directory above it that exists yet. In a mount namespace of this process's own where
  // it can have one: a check killed half-way leaves no mount on the host.
  if (::unshare(CLONE_NEWNS) == 0) {
    (void)::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
  }
  const std::string under = NearestExisting(config.root);
  absl::StatusOr<std::string> dir = MakeTempDirIn(under, ".berth-check-overlay-");
  if (!dir.ok()) {
    out->push_back({Level::kFail, "overlayfs",
                    absl::StrCat("cannot make a directory in ", under, ": ",
                                 dir.status().message())});
    return;
  }
  for (const char* sub : {"/lower", "/upper", "/work", "/merged"}) (void)MakeDirs(*dir + sub);
  const std::string options =
      absl::StrCat("lowerdir=", *dir, "/lower,upperdir=", *dir, "/upper,workdir=", *dir, "/work");
  const std::string merged = *dir + "/merged";
  std::error_code ignored;
  if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0) {
    const int err = errno;
    std::filesystem::remove_all(*dir, ignored);
    out->push_back({Level::kFail, "overlayfs",
                    absl::StrCat("an overlay mount in ", under, " failed (",
                                 std::strerror(err), "): image layers cannot be stacked, no "
                                 "container can start")});
    return;
  }
  ::umount2(merged.c_str(), MNT_DETACH);
  std::filesystem::remove_all(*dir, ignored);
  out->push_back({Level::kOk, "overlayfs", absl::StrCat("an overlay mounts in ", under)});
}

void CheckCgroups(std::vector<NodeFinding>* out) {
  const pod::CgroupSupport cgroups = pod::ProbeCgroupSupport();
  out->push_back({Level::kOk, "cgroups", cgroups.Describe()});
  for (const auto& [controller, without] :
       std::vector<std::pair<std::string, std::string>>{
           {"memory", "memory limits and OOM kills"},
           {"cpu", "CPU shares and quotas"},
           {"pids", "pid limits"},
           {"cpuset", "CPU and memory-node pinning"}}) {
    if (!cgroups.Has(controller)) {
      out->push_back({controller == "memory" || controller == "cpu" ? Level::kFail : Level::kWarn,
                      "cgroups",
                      absl::StrCat("the ", controller, " controller is not available: no ",
                                   without, " for containers")});
    }
  }
}

void CheckNetwork(const config::Config& config, std::vector<NodeFinding>* out) {
  absl::StatusOr<cni::NetworkConf> network = cni::FindDefaultNetwork(
      config.network.conf_dir, config.network.bin_dirs, config.network.default_network);
  if (network.ok()) {
    out->push_back({Level::kOk, "CNI",
                    absl::StrCat("network ", network->name, " (", network->path, "): ",
                                 absl::StrJoin(network->plugin_types, ", "))});
  } else {
    out->push_back({Level::kWarn, "CNI",
                    absl::StrCat(network.status().message(),
                                 ": pods (but host-network ones) wait until a network is "
                                 "configured")});
  }
}

void CheckKernel(std::vector<NodeFinding>* out) {
  std::vector<std::string> missing;
  for (const char* ns : {"mnt", "uts", "ipc", "pid", "net", "cgroup"}) {
    if (::access(absl::StrCat("/proc/self/ns/", ns).c_str(), F_OK) != 0) missing.push_back(ns);
  }
  if (missing.empty()) {
    out->push_back({Level::kOk, "namespaces", "mnt, uts, ipc, pid, net, cgroup"});
  } else {
    out->push_back({Level::kFail, "namespaces",
                    absl::StrCat("the kernel lacks ", absl::StrJoin(missing, ", "),
                                 " namespaces: pods cannot be isolated")});
  }
  absl::StatusOr<std::string> seccomp = ReadFile("/proc/sys/kernel/seccomp/actions_avail");
  if (seccomp.ok()) {
    out->push_back({Level::kOk, "seccomp",
                    std::string(absl::StripAsciiWhitespace(*seccomp))});
  } else {
    out->push_back({Level::kWarn, "seccomp",
                    "not available: RuntimeDefault and Localhost profiles cannot be applied"});
  }
}

void CheckDirectories(const config::Config& config, std::vector<NodeFinding>* out) {
  for (const auto& [key, path] : {std::pair<const char*, std::string>{"root", config.root},
                                  std::pair<const char*, std::string>{"run_root", config.run_root}}) {
    // Nothing is made here: berthd makes what is missing when it starts.
    const std::string existing = NearestExisting(path);
    if (::access(existing.c_str(), W_OK) != 0) {
      out->push_back({Level::kFail, key, absl::StrCat(existing, " is not writable: berthd cannot ",
                                                      existing == path ? "write " : "make ", path)});
    } else {
      out->push_back({Level::kOk, key,
                      existing == path ? path : absl::StrCat(path, " (made at start)")});
    }
  }
}

}  // namespace

std::vector<NodeFinding> CheckHelpers(const config::Config& config) {
  const HelperPaths helpers = ResolveHelpers(config);
  const std::pair<std::string, const char*> all[] = {
      {helpers.monitor, "no container can start"},
      {helpers.pause, "no pod can start"},
      {helpers.fetch, "no image can be pulled"},
  };
  std::vector<NodeFinding> findings;
  for (const auto& [path, without] : all) {
    if (Executable(path)) {
      findings.push_back({Level::kOk, "helper", path});
    } else {
      findings.push_back({Level::kFail, "helper", absl::StrCat(path, " is missing: ", without)});
    }
  }
  return findings;
}

std::vector<NodeFinding> CheckNode(const config::Config& config) {
  std::vector<NodeFinding> findings;
  if (::geteuid() != 0) {
    findings.push_back({Level::kWarn, "user", "not root: berthd runs as root; some checks are partial"});
  }
  CheckDirectories(config, &findings);
  CheckRuntimes(config, &findings);
  for (NodeFinding& f : CheckHelpers(config)) findings.push_back(std::move(f));
  CheckOverlay(config, &findings);
  CheckCgroups(&findings);
  CheckKernel(&findings);
  CheckNetwork(config, &findings);
  return findings;
}

int PrintFindings(const std::vector<NodeFinding>& findings, std::string* out) {
  int code = 0;
  for (const NodeFinding& f : findings) {
    const char* level = f.level == Level::kOk ? "ok  " : f.level == Level::kWarn ? "warn" : "FAIL";
    if (f.level == Level::kFail) code = 1;
    absl::StrAppend(out, level, "  ", f.what, ": ", f.detail, "\n");
  }
  absl::StrAppend(out, code == 0 ? "this node can run berthd\n"
                                 : "this node cannot run pods with berthd as configured: see FAIL above\n");
  return code;
}

}  // namespace berth::cri
