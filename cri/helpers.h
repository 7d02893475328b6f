#pragma once

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
};

HelperPaths ResolveHelpers(const config::Config& config);

// Builds the root filesystem every pause container shares, read-only: <dir>/pause (a copy of
// berth-pause) and the mount points. Replaces what an older berthd left there.
absl::Status PreparePauseRootfs(const std::string& dir, const std::string& pause_binary);

}  // namespace berth::cri
