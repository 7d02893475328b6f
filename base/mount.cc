#include "base/mount.h"

#include <sys/mount.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/logging.h"

namespace berth {

absl::StatusOr<ScopedMount> ScopedMount::Tmpfs(const std::string& target, unsigned long flags,
                                               const std::string& options) {
  if (absl::Status s = MakeDirs(target, 0755); !s.ok()) return s;
  if (::mount("tmpfs", target.c_str(), "tmpfs", flags, options.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("mount tmpfs on ", target));
  }
  return ScopedMount(target);
}

ScopedMount::~ScopedMount() {
  if (target_.empty()) return;
  if (absl::Status s = Unmount(target_); !s.ok()) spdlog::warn("{}", s.message());
}

absl::Status Unmount(const std::string& target) {
  if (::umount2(target.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("unmount ", target));
  }
  return absl::OkStatus();
}

namespace {

// Every mount point of this mount namespace, as /proc/self/mountinfo lists them (it escapes space,
// tab, newline and backslash as \ooo).
std::vector<std::string> MountPoints() {
  std::vector<std::string> out;
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, escaped;
    fields >> id >> parent >> dev >> root >> escaped;
    std::string mount_point;
    for (size_t i = 0; i < escaped.size(); ++i) {
      auto octal = [&](size_t at) { return escaped[at] >= '0' && escaped[at] <= '7'; };
      if (escaped[i] == '\\' && i + 3 < escaped.size() && octal(i + 1) && octal(i + 2) &&
          octal(i + 3)) {
        mount_point += static_cast<char>((escaped[i + 1] - '0') * 64 + (escaped[i + 2] - '0') * 8 +
                                         (escaped[i + 3] - '0'));
        i += 3;
      } else {
        mount_point += escaped[i];
      }
    }
    out.push_back(std::move(mount_point));
  }
  return out;
}

}  // namespace

bool IsMountPoint(const std::string& path) {
  for (const std::string& point : MountPoints()) {
    if (point == path) return true;
  }
  return false;
}

std::vector<std::string> MountPointsUnder(const std::string& dir) {
  const std::string prefix = dir.ends_with('/') ? dir : dir + "/";
  std::vector<std::string> out = MountPoints();
  std::erase_if(out, [&](const std::string& point) { return !point.starts_with(prefix); });
  return out;
}

}  // namespace berth
