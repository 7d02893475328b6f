#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "config/config.h"

namespace berth::cri {

// Where berthd's helper programs are: from the configuration when it names them, otherwise
// relative to berthd's own path (<prefix>/bin/berthd -> <prefix>/libexec/berth/...), so an installed
// tree can be moved as a whole.
struct HelperPaths {
  std::string monitor;  // monitor.path, or berth-conmon
  std::string pause;    // berth-pause
  std::string fetch;    // berth-fetch
  std::string exec;     // berth-exec
};

HelperPaths ResolveHelpers(const config::Config& config);

// Builds the root filesystem every pause container shares, read-only: <dir>/pause (a copy of
// berth-pause) and the mount points. Replaces what an older berthd left there.
absl::Status PreparePauseRootfs(const std::string& dir, const std::string& pause_binary);

// Whether `labels` has every key of a CRI label selector with the same value.
template <typename Selector>
bool LabelsMatch(const std::map<std::string, std::string>& labels, const Selector& selector) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace berth::cri
