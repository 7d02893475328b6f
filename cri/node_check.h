#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace berth::cri {

// `berthd check`: whether this node can run berthd as configured, checked before it starts, each
// finding in plain words. kFail: pods or containers cannot work (berthd would start, but every
// RunPodSandbox or CreateContainer would fail); kWarn: something works less well or not yet
// (no CNI network: pods wait for one).
struct NodeFinding {
  enum class Level { kOk, kWarn, kFail };
  Level level = Level::kOk;
  std::string what;    // "runtime runc", "overlayfs", "cgroups", ...
  std::string detail;  // what was found, or what is missing and what it means
};

// Whether berth's helpers (berth-conmon or monitor.path, berth-pause, berth-fetch) are there;
// berthd says the same in its log at start.
std::vector<NodeFinding> CheckHelpers(const config::Config& config);

// Runs every check (as root it also mounts a test overlay under run_root and unmounts it).
std::vector<NodeFinding> CheckNode(const config::Config& config);

// One line per finding ("ok    cgroups: ..."), and the exit code: 1 if any failed.
int PrintFindings(const std::vector<NodeFinding>& findings, std::string* out);

}  // namespace berth::cri
