#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pod/cgroup_support.h"

namespace berth::pod {

// What the OCI spec of a pod's infra (pause) container is made from.
struct PauseSpecOptions {
  std::string rootfs;          // absolute: the shared, read-only pause root filesystem
  std::vector<std::string> args = {"/pause"};
  std::string hostname;
  std::string netns_path;      // "" = the host's network namespace
  bool host_ipc = false;
  bool host_pid = false;       // NamespaceOption.pid NODE
  bool host_uts = false;       // with host network, kubelet expects the host's UTS
  std::string shm_path;        // bind-mounted at /dev/shm; "" = none (host IPC)
  std::string cgroups_path;    // "/kubepods/pod<uid>/<id>" or "slice:prefix:name" for systemd
  CgroupSupport cgroups;       // what its cgroup can enforce: cpu shares 2 where it can
  int oom_score_adj = -998;
  std::map<std::string, std::string> sysctls;
  std::map<std::string, std::string> annotations;
};

// The OCI runtime spec (config.json) of a pause container: its own PID, IPC, UTS and mount
// namespaces unless the host's are asked for, the pod's network namespace by path, a read-only
// root, no capabilities, no new privileges, uid/gid 65535, masked and read-only /proc paths, and
// the lowest cpu shares (2) but no limits: the pod's limits are on the pod's cgroup, kubelet's.
// InvalidArgument for a sysctl that is not namespaced (or is for a namespace the pod shares with
// the host).
absl::StatusOr<std::string> PauseSpec(const PauseSpecOptions& options);

// The paths the runtimes mask and make read-only by default (cri-o's and containerd's lists).
const std::vector<std::string>& DefaultMaskedPaths();
const std::vector<std::string>& DefaultReadonlyPaths();

// `want`, raised to berthd's own oom_score_adj where the host does not let an unprivileged-enough
// process go lower (containerd's restrict_oom_score_adj): runc would fail otherwise.
int ClampOomScoreAdj(int want, const std::string& self_path = "/proc/self/oom_score_adj");

// Whether `name` is a sysctl Linux namespaces (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*
// with IPC; net.* with network), and so one a pod may set.
bool IsNamespacedSysctl(const std::string& name, bool host_ipc, bool host_network);

}  // namespace berth::pod
