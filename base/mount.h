#pragma once

#include <string>
#include <vector>
#include <utility>

#include "absl/status/statusor.h"

namespace berth {

// Owns a mount point: unmounts it (lazily, MNT_DETACH) on destruction unless Release()d, for the
// moment persisted state takes ownership. Move-only.
class ScopedMount {
 public:
  // Mounts a tmpfs at `target` (created if missing) with `options` ("mode=1777,size=65536k") and
  // flags (MS_NOSUID | ...). Internal naming the target on failure; nothing is left behind.
  static absl::StatusOr<ScopedMount> Tmpfs(const std::string& target, unsigned long flags,
                                           const std::string& options);

  // Takes ownership of what is already mounted at `target`.
  static ScopedMount Adopt(std::string target) { return ScopedMount(std::move(target)); }

  ScopedMount(ScopedMount&& other) noexcept : target_(std::exchange(other.target_, "")) {}
  ScopedMount& operator=(ScopedMount&&) = delete;
  ScopedMount(const ScopedMount&) = delete;
  ~ScopedMount();

  const std::string& target() const { return target_; }
  std::string Release() { return std::exchange(target_, ""); }

 private:
  explicit ScopedMount(std::string target) : target_(std::move(target)) {}
  std::string target_;
};

// Unmounts `target` lazily; OK if nothing is mounted there or it does not exist.
absl::Status Unmount(const std::string& target);

// Whether something is mounted exactly at `path` (per /proc/self/mountinfo).
bool IsMountPoint(const std::string& path);
// The mount points strictly below directory `dir` (per /proc/self/mountinfo), deepest last.
std::vector<std::string> MountPointsUnder(const std::string& dir);

}  // namespace berth
