#include "image/rootfs.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/status_macros.h"

namespace berth::image {

absl::StatusOr<ScopedMount> MountRootfs(const std::string& dir,
                                        const std::vector<std::string>& layer_dirs) {
  for (const char* sub : {"/upper", "/work", "/rootfs"}) RETURN_IF_ERROR(MakeDirs(dir + sub, 0755));
  std::vector<std::string> lower(layer_dirs.rbegin(), layer_dirs.rend());  // topmost first
  if (lower.empty()) {
    // An image without layers: overlayfs still wants a lower directory.
    RETURN_IF_ERROR(MakeDirs(dir + "/empty", 0755));
    lower.push_back(dir + "/empty");
  }
  // mount(2) takes one page of options: with the layers' absolute paths only ~40 of them would
  // fit. Each layer gets a short link instead (l/0, l/1, ...), named relative to `dir`, which a
  // thread of our own (its working directory unshared from the daemon's) mounts from.
  const std::string links = dir + "/l";
  std::error_code ec;
  std::filesystem::remove_all(links, ec);
  RETURN_IF_ERROR(MakeDirs(links, 0700));
  std::vector<std::string> short_names;
  for (size_t i = 0; i < lower.size(); ++i) {
    short_names.push_back(absl::StrCat("l/", i));
    if (::symlink(lower[i].c_str(), (dir + "/" + short_names.back()).c_str()) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("link layer ", lower[i]));
    }
  }
  const std::string options = absl::StrCat("lowerdir=", absl::StrJoin(short_names, ":"),
                                           ",upperdir=", dir, "/upper,workdir=", dir, "/work");
  const std::string target = dir + "/rootfs";
  absl::Status mounted;
  try {
    std::thread mounter([&] {
      if (::unshare(CLONE_FS) != 0 || ::chdir(dir.c_str()) != 0) {
        mounted = ErrnoToStatus(errno, absl::StrCat("enter ", dir));
      } else if (::mount("overlay", target.c_str(), "overlay", 0, options.c_str()) != 0) {
        mounted = ErrnoToStatus(errno, absl::StrCat("mount overlay on ", target, " (",
                                                    lower.size(), " layers)"));
      }
    });
    mounter.join();
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("no thread to mount ", target, ": ", e.what()));
  }
  RETURN_IF_ERROR(mounted);
  return ScopedMount::Adopt(target);
}

absl::Status RemoveRootfs(const std::string& dir) {
  RETURN_IF_ERROR(Unmount(dir + "/rootfs"));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

WritableUsage UpperUsage(const std::string& dir) {
  WritableUsage usage;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir + "/upper", std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    ++usage.inodes;
    if (S_ISREG(st.st_mode)) usage.bytes += st.st_blocks * 512;
  }
  return usage;
}

}  // namespace berth::image
