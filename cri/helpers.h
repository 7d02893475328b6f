#pragma once

#include <string>

#include "config/config.h"

namespace berth::cri {

// Where berthd's helper programs are: from the configuration when it names them, otherwise
// relative to berthd's own path (<prefix>/bin/berthd -> <prefix>/libexec/berth/...), so an installed
// tree can be moved as a whole.
struct HelperPaths {
  std::string monitor;  // berth-conmon, or monitor.path
  std::string pause;    // berth-pause
};

HelperPaths ResolveHelpers(const config::Config& config);

}  // namespace berth::cri
