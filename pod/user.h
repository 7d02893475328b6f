#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::pod {

struct ResolvedUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additional_gids;
  std::string name;  // "" when the uid has no /etc/passwd entry
};

// What the user of a container's process is, from the CRI security context and the image's
// USER, resolved in the container's own /etc/passwd and /etc/group (under `rootfs`):
//   - run_as_username, else run_as_user, else the image's "user[:group]" (names or numbers);
//   - the group: run_as_group, else the image's group, else the user's primary group, else 0;
//   - additional groups: the user's groups in /etc/group (unless `strict`), then `supplemental`.
// InvalidArgument when a name is not in the container's files, naming it.
absl::StatusOr<ResolvedUser> ResolveUser(const std::string& rootfs,
                                         std::optional<int64_t> run_as_user,
                                         const std::string& run_as_username,
                                         std::optional<int64_t> run_as_group,
                                         const std::string& image_user,
                                         const std::vector<int64_t>& supplemental, bool strict);

}  // namespace berth::pod
