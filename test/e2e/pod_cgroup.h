#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace berth::testing {

inline constexpr char kCgroupRoot[] = "/sys/fs/cgroup";

// Whether this host has the unified cgroup v2 hierarchy only.
bool CgroupV2();

// Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 controllers, name=systemd, the hybrid
// unified mount), or the root itself on a v2 host.
std::vector<std::string> CgroupHierarchies();

// A kubelet-style pod cgroup ("/berth-e2e-<random>/pod<uid>", the cgroupfs driver): made in every
// hierarchy under /sys/fs/cgroup before RunPodSandbox, as kubelet does, and removed with all that
// is left below it, also when the test fails. Not thread-safe.
class PodCgroup {
 public:
  explicit PodCgroup(const std::string& uid);
  ~PodCgroup() { Remove(); }
  PodCgroup(const PodCgroup&) = delete;
  PodCgroup& operator=(const PodCgroup&) = delete;

  absl::Status Create();
  // rmdir from the leaves up (cgroup directories cannot be removed recursively). Whether all is
  // gone: a cgroup that still has processes stays.
  bool Remove();

  // The cgroup parent to give RunPodSandbox.
  const std::string& parent() const { return parent_; }

 private:
  std::string top_;
  std::string parent_;
};

}  // namespace berth::testing
