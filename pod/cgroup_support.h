#pragma once

#include <set>
#include <string>
#include <vector>

namespace berth::pod {

// How the host's cgroups are laid out, as runc tells them apart.
enum class CgroupMode {
  kV1,      // v1 hierarchies only
  kHybrid,  // v1 hierarchies and a cgroup2 mount at <root>/unified: runc works in v1 mode
  kV2,      // the root is the cgroup2 unified hierarchy
};

// What this host's cgroups can enforce, as runc will use them: filled once at start by
// ProbeCgroupSupport, narrowed per pod by ForCgroupParent, and read by OciResources to leave out
// what would make runc fail. A plain value, so that tests can describe any host.
struct CgroupSupport {
  std::string root = "/sys/fs/cgroup";
  CgroupMode mode = CgroupMode::kV1;
  // v1 and hybrid: the mounted v1 hierarchies, by controller ("cpu", "memory", "name=systemd").
  std::set<std::string> v1_controllers;
  // v2: the controllers a container's cgroup can have (the root's cgroup.controllers, narrowed
  // by ForCgroupParent). Hybrid: the unified mount's, which runc in v1 mode does not use.
  std::set<std::string> v2_controllers;
  bool swap = false;  // swap accounting: memory.memsw.* (v1) / memory.swap.max (v2)
  // The host's huge page sizes as kubelet names them ("2MB", "1GB"), smallest first.
  std::vector<std::string> hugepage_sizes;
  bool cpu_rt = false;     // cpu.rt_runtime_us (v1; v2 has no real-time group scheduling)
  bool io_weight = false;  // blkio.weight / blkio.bfq.weight (v1), io.weight / io.bfq.weight (v2)

  bool v2() const { return mode == CgroupMode::kV2; }
  // Whether runc can write `controller`'s files: a mounted v1 hierarchy in v1 and hybrid mode,
  // an available controller in v2 mode.
  bool Has(const std::string& controller) const;
  // One line for the log: "hybrid (v1: cpu memory ...; unified: hugetlb ...), swap: yes, ...".
  std::string Describe() const;
};

// Where ProbeCgroupSupport looks; tests point it at a fake tree.
struct CgroupProbePaths {
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string self_cgroup = "/proc/self/cgroup";
  std::string hugepages = "/sys/kernel/mm/hugepages";
};

// Reads the host's cgroup layout. Never fails: what cannot be read is taken as absent.
CgroupSupport ProbeCgroupSupport(const CgroupProbePaths& paths = {});

// The cgroup directory (relative to the cgroup root) a cgroup parent names: cgroupfs paths as
// they are, systemd slices expanded ("kubepods-burstable-pod1.slice" ->
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"); "" = the root.
std::string CgroupParentDir(const std::string& cgroup_parent, bool systemd);

// `host` for a container created under `parent_dir`. On v2 its cgroup gets only the controllers
// that runc can enable down to it: those of the nearest existing ancestor (its cgroup.controllers,
// or only its cgroup.subtree_control when processes in it keep more from being enabled). v1
// hierarchies are independent of the parent: `host` unchanged.
CgroupSupport ForCgroupParent(const CgroupSupport& host, const std::string& parent_dir);

// Keeps warm, on a thread of its own, the kernel's global cgroup_threadgroup_rwsem, whose writer
// (every write of a pid to a cgroup.procs) waits an RCU grace period when none has written for a
// grace period (15-25 ms of a `runc run` on this v1 host; the `favordynmods` mount option would
// make it so for good): it writes berthd's pid into the cgroup.procs of the cgroup it is in (which
// moves nothing) at once and then every few milliseconds, until a second after the last call.
// Called where RunPodSandbox, CreateContainer and StartContainer begin (a grace period ahead of
// the runtime they ask) and where an OCI runtime is asked to exec, so that the runtime's attach
// of the process finds the lock warm. Never blocks; does nothing where the file cannot be
// written; idle between calls.
void WarmCgroupAttach();
// The name of the thread that does it (what `top -H` shows).
inline constexpr char kCgroupWarmThreadName[] = "berth-cgwarm";

}  // namespace berth::pod
