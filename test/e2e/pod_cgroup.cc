#include "test/e2e/pod_cgroup.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "base/file_util.h"
#include "base/random_id.h"

namespace berth::testing {

bool CgroupV2() { return ::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0; }

std::vector<std::string> CgroupHierarchies() {
  if (CgroupV2()) return {kCgroupRoot};
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(kCgroupRoot, ec)) {
    if (!e.is_symlink(ec) && std::filesystem::exists(e.path() / "cgroup.procs", ec)) {
      out.push_back(e.path().string());
    }
  }
  return out;
}

PodCgroup::PodCgroup(const std::string& uid)
    : top_("/berth-e2e-" + NewRandomId().substr(0, 12)), parent_(top_ + "/pod" + uid) {}

absl::Status PodCgroup::Create() {
  for (const std::string& hierarchy : CgroupHierarchies()) {
    if (absl::Status s = MakeDirs(hierarchy + parent_); !s.ok()) return s;
  }
  return absl::OkStatus();
}

bool PodCgroup::Remove() {
  bool gone = true;
  for (const std::string& hierarchy : CgroupHierarchies()) {
    const std::string top = hierarchy + top_;
    std::error_code ec;
    if (!std::filesystem::exists(top, ec)) continue;
    std::vector<std::string> dirs = {top};
    for (const auto& e : std::filesystem::recursive_directory_iterator(top, ec)) {
      if (e.is_directory(ec) && !e.is_symlink(ec)) dirs.push_back(e.path().string());
    }
    std::sort(dirs.begin(), dirs.end(), [](const std::string& a, const std::string& b) {
      return a.size() > b.size();  // children before their parents
    });
    for (const std::string& dir : dirs) {
      if (::rmdir(dir.c_str()) != 0) gone = false;
    }
  }
  return gone;
}

}  // namespace berth::testing
