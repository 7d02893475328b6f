#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "nlohmann/json_fwd.hpp"
#include "pod/cgroup_support.h"

namespace berth::pod {

// CRI LinuxContainerResources, as kubelet sent them; 0 / empty = not set.
struct ResourcesSpec {
  int64_t cpu_period = 0;
  int64_t cpu_quota = 0;
  int64_t cpu_shares = 0;
  int64_t memory_limit = 0;
  int64_t memory_swap_limit = 0;
  int64_t oom_score_adj = 0;
  std::string cpuset_cpus;
  std::string cpuset_mems;
  std::map<std::string, uint64_t> hugepage_limits;  // page size ("2MB") -> bytes
  std::map<std::string, std::string> unified;       // cgroup v2 files
};

// The OCI linux.resources object (without devices) that applies `r` on `host`. kubelet sends
// the same shape to every node (hugepage limits for every size, swap equal to the memory limit,
// memory.oom.group on v2), so what the host's cgroups cannot enforce is left out, each with a
// debug line ("<who>: <field> not applied: <why>") rather than failing the create or update in
// runc. oom_score_adj is not a cgroup setting: it belongs in process.oomScoreAdj.
nlohmann::json OciResources(const ResourcesSpec& r, const CgroupSupport& host,
                            const std::string& who);

// `current` with what an UpdateContainerResources sets: its non-zero fields, its huge page sizes
// and unified keys (kubelet's CPU manager sends only cpuset_cpus). containerd merges the same way.
ResourcesSpec MergeResourceUpdate(const ResourcesSpec& current, const ResourcesSpec& update);

// containerd's annotations for a pod's resources on its pause container
// (io.kubernetes.cri.sandbox-cpu-period, -cpu-quota, -cpu-shares, -memory).
std::map<std::string, std::string> SandboxResourceAnnotations(const ResourcesSpec& pod);

// How berth.db keeps them (missing keys read as unset). from_json throws nlohmann's exceptions.
void to_json(nlohmann::json& j, const ResourcesSpec& r);
void from_json(const nlohmann::json& j, ResourcesSpec& r);

}  // namespace berth::pod
