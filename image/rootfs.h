#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/mount.h"

namespace berth::image {

// A container's root filesystem: overlayfs with the image's layers (bottom first in
// `layer_dirs`) as lower directories and <dir>/upper and <dir>/work for the container's writes,
// mounted at <dir>/rootfs. Returns the owning mount (unmounted on destruction unless released);
// Internal naming the step on failure, leaving no mount behind.
absl::StatusOr<ScopedMount> MountRootfs(const std::string& dir,
                                        const std::vector<std::string>& layer_dirs);

// Unmounts <dir>/rootfs if mounted and removes <dir>. OK when already gone.
absl::Status RemoveRootfs(const std::string& dir);

// Bytes and inodes of a container's writable layer (<dir>/upper).
struct WritableUsage {
  int64_t bytes = 0;
  int64_t inodes = 0;
};
WritableUsage UpperUsage(const std::string& dir);

}  // namespace berth::image
