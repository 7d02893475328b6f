#include "pod/oci_spec.h"

#include <algorithm>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pod/resources.h"

namespace berth::pod {
namespace {

using nlohmann::json;

json Mount(const std::string& destination, const std::string& type, const std::string& source,
           std::vector<std::string> options) {
  return {{"destination", destination}, {"type", type}, {"source", source}, {"options", options}};
}

}  // namespace

const std::vector<std::string>& DefaultMaskedPaths() {
  static const std::vector<std::string> kPaths = {
      "/proc/acpi",         "/proc/kcore",          "/proc/keys",     "/proc/latency_stats",
      "/proc/timer_list",   "/proc/timer_stats",    "/proc/sched_debug", "/proc/scsi",
      "/sys/firmware",      "/sys/devices/virtual/powercap"};
  return kPaths;
}

const std::vector<std::string>& DefaultReadonlyPaths() {
  static const std::vector<std::string> kPaths = {"/proc/asound", "/proc/bus", "/proc/fs",
                                                  "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  return kPaths;
}

int ClampOomScoreAdj(int want, const std::string& self_path) {
  std::ifstream in(self_path);
  int own = -1000;
  if (!(in >> own)) return want;
  return std::max(want, own);
}

bool IsNamespacedSysctl(const std::string& name, bool host_ipc, bool host_network) {
  const bool ipc = name == "kernel.sem" || absl::StartsWith(name, "kernel.shm") ||
                   absl::StartsWith(name, "kernel.msg") || absl::StartsWith(name, "fs.mqueue.");
  if (ipc) return !host_ipc;
  if (absl::StartsWith(name, "net.")) return !host_network;
  return false;
}

absl::StatusOr<std::string> PauseSpec(const PauseSpecOptions& o) {
  const bool host_network = o.netns_path.empty();
  for (const auto& [name, value] : o.sysctls) {
    if (!IsNamespacedSysctl(name, o.host_ipc, host_network)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sysctl \"", name, "\" is not namespaced", host_network || o.host_ipc
                                                         ? " or the pod shares that namespace with the host"
                                                         : ""));
    }
  }
  json namespaces = json::array({{{"type", "mount"}}});
  if (!o.host_pid) namespaces.push_back({{"type", "pid"}});
  if (!o.host_ipc) namespaces.push_back({{"type", "ipc"}});
  if (!o.host_uts) namespaces.push_back({{"type", "uts"}});
  if (!host_network) namespaces.push_back({{"type", "network"}, {"path", o.netns_path}});

  json mounts = json::array({
      Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}),
      Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
      Mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
      Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
      Mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
  });
  if (!o.shm_path.empty()) {
    mounts.push_back(Mount("/dev/shm", "bind", o.shm_path, {"rbind", "ro", "nosuid", "nodev", "noexec"}));
  }
  json sysctl = json::object();
  for (const auto& [k, v] : o.sysctls) sysctl[k] = v;
  json spec = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 65535}, {"gid", 65535}}},
        {"args", o.args},
        {"env", {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
        {"cwd", "/"},
        {"capabilities",
         {{"bounding", json::array()}, {"effective", json::array()},
          {"permitted", json::array()}}},
        {"noNewPrivileges", true},
        {"oomScoreAdj", o.oom_score_adj}}},
      {"root", {{"path", o.rootfs}, {"readonly", true}}},
      {"mounts", mounts},
      {"annotations", o.annotations},
      {"linux",
       {{"namespaces", namespaces},
        {"maskedPaths", DefaultMaskedPaths()},
        {"readonlyPaths", DefaultReadonlyPaths()},
        {"sysctl", sysctl},
        {"resources", OciResources({.cpu_shares = 2}, o.cgroups, "pause container")}}},
  };
  if (!o.host_uts) spec["hostname"] = o.hostname;
  if (!o.cgroups_path.empty()) spec["linux"]["cgroupsPath"] = o.cgroups_path;
  return spec.dump(2);
}

}  // namespace berth::pod
