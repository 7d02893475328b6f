#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::pod {

// The OCI `linux.seccomp` object (JSON) of the RuntimeDefault profile: the allow-list Docker,
// containerd and cri-o ship, with the capability-dependent parts following `capabilities`
// ("CAP_SYS_ADMIN", ...). Everything else fails with EPERM.
std::string RuntimeDefaultSeccomp(const std::vector<std::string>& capabilities);

// A Localhost profile (Docker/Kubernetes format: defaultAction, architectures or archMap,
// syscalls) as the OCI `linux.seccomp` object. InvalidArgument naming the file when it cannot be
// read or is not such a profile.
absl::StatusOr<std::string> LocalhostSeccomp(const std::string& path);

}  // namespace berth::pod
