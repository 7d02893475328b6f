#include "pod/user.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace berth::pod {
namespace {

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0, gid = 0;
};
struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

// The container's /etc files, read without following links out of its root filesystem: an
// image could otherwise make berthd read any file on the host.
std::vector<std::vector<std::string>> ReadColonFile(const std::string& rootfs,
                                                   const std::string& name) {
  std::vector<std::vector<std::string>> rows;
  const std::string path = rootfs + "/etc/" + name;
  std::error_code ec;
  if (std::filesystem::is_symlink(path, ec) || std::filesystem::is_symlink(rootfs + "/etc", ec)) {
    return rows;
  }
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    rows.push_back(absl::StrSplit(line, ':'));
  }
  return rows;
}

std::vector<PasswdEntry> Passwd(const std::string& rootfs) {
  std::vector<PasswdEntry> out;
  for (const auto& f : ReadColonFile(rootfs, "passwd")) {
    PasswdEntry e;
    if (f.size() < 4 || !absl::SimpleAtoi(f[2], &e.uid) || !absl::SimpleAtoi(f[3], &e.gid)) continue;
    e.name = f[0];
    out.push_back(e);
  }
  return out;
}

std::vector<GroupEntry> Groups(const std::string& rootfs) {
  std::vector<GroupEntry> out;
  for (const auto& f : ReadColonFile(rootfs, "group")) {
    GroupEntry e;
    if (f.size() < 3 || !absl::SimpleAtoi(f[2], &e.gid)) continue;
    e.name = f[0];
    if (f.size() > 3 && !f[3].empty()) e.members = absl::StrSplit(f[3], ',');
    out.push_back(e);
  }
  return out;
}

}  // namespace

absl::StatusOr<ResolvedUser> ResolveUser(const std::string& rootfs,
                                         std::optional<int64_t> run_as_user,
                                         const std::string& run_as_username,
                                         std::optional<int64_t> run_as_group,
                                         const std::string& image_user,
                                         const std::vector<int64_t>& supplemental, bool strict) {
  const std::vector<PasswdEntry> passwd = Passwd(rootfs);
  const std::vector<GroupEntry> groups = Groups(rootfs);
  std::string user_part, group_part;
  if (!run_as_username.empty()) {
    user_part = run_as_username;
  } else if (run_as_user) {
    user_part = std::to_string(*run_as_user);
  } else {
    std::vector<std::string> parts = absl::StrSplit(image_user, absl::MaxSplits(':', 1));
    user_part = parts[0];
    if (parts.size() > 1) group_part = parts[1];
  }
  ResolvedUser r;
  std::optional<uint32_t> primary;
  // No user anywhere: root. (push_back, not = "0": GCC 12 reports a false -Wrestrict for a
  // one-character literal assigned to a std::string at -O2 and above, GCC bug 105329.)
  if (user_part.empty()) user_part.push_back('0');
  if (absl::SimpleAtoi(user_part, &r.uid)) {
    for (const PasswdEntry& e : passwd) {
      if (e.uid == r.uid) {
        r.name = e.name;
        primary = e.gid;
        break;
      }
    }
  } else {
    auto it = std::find_if(passwd.begin(), passwd.end(),
                           [&](const PasswdEntry& e) { return e.name == user_part; });
    if (it == passwd.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("user \"", user_part, "\" is not in the image's /etc/passwd"));
    }
    r.uid = it->uid;
    r.name = it->name;
    primary = it->gid;
  }
  if (run_as_group) {
    r.gid = static_cast<uint32_t>(*run_as_group);
  } else if (!group_part.empty()) {
    if (!absl::SimpleAtoi(group_part, &r.gid)) {
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const GroupEntry& g) { return g.name == group_part; });
      if (it == groups.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("group \"", group_part, "\" is not in the image's /etc/group"));
      }
      r.gid = it->gid;
    }
  } else {
    r.gid = primary.value_or(0);
  }
  auto add = [&](uint32_t gid) {
    if (std::find(r.additional_gids.begin(), r.additional_gids.end(), gid) ==
        r.additional_gids.end()) {
      r.additional_gids.push_back(gid);
    }
  };
  add(r.gid);  // the primary group first, like the runtimes
  if (!strict) {
    // Merge: every group of the image's /etc/group that lists the user.
    if (!r.name.empty()) {
      for (const GroupEntry& g : groups) {
        if (std::find(g.members.begin(), g.members.end(), r.name) != g.members.end()) add(g.gid);
      }
    }
  }
  for (int64_t gid : supplemental) add(static_cast<uint32_t>(gid));
  return r;
}

}  // namespace berth::pod
