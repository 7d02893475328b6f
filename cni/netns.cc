#include "cni/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/unique_fd.h"

namespace berth::cni {

absl::StatusOr<NetNs> NetNs::Create(const std::string& path) {
  if (absl::Status s = MakeDirs(DirName(path), 0711); !s.ok()) return s;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create ", path));
  ::close(fd);
  // unshare() changes only the calling thread's namespace; a thread of its own makes it, pins it,
  // and ends, so no other thread of the daemon is ever in the new namespace.
  absl::Status status;
  std::thread maker([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      status = ErrnoToStatus(errno, "unshare network namespace");
      return;
    }
    const std::string self = absl::StrCat("/proc/self/task/", ::syscall(SYS_gettid), "/ns/net");
    if (::mount(self.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      status = ErrnoToStatus(errno, absl::StrCat("pin network namespace at ", path));
    }
  });
  maker.join();
  if (!status.ok()) {
    ::unlink(path.c_str());
    return status;
  }
  return NetNs(path);
}

NetNs::~NetNs() {
  if (path_.empty()) return;
  if (absl::Status s = RemoveNetNs(path_); !s.ok()) {
    spdlog::warn("network namespace {}: {}", path_, s.message());
  }
}

absl::Status BringUpLoopback(const std::string& path) {
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (ns.get() < 0) return ErrnoToStatus(errno, absl::StrCat("open network namespace ", path));
  absl::Status status;
  std::thread upper([&] {
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
      status = ErrnoToStatus(errno, absl::StrCat("enter network namespace ", path));
      return;
    }
    UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq request{};
    std::snprintf(request.ifr_name, sizeof request.ifr_name, "lo");
    if (sock.get() < 0 || ::ioctl(sock.get(), SIOCGIFFLAGS, &request) != 0) {
      status = ErrnoToStatus(errno, absl::StrCat("read the flags of lo in ", path));
      return;
    }
    if ((request.ifr_flags & IFF_UP) != 0) return;
    request.ifr_flags |= IFF_UP;
    if (::ioctl(sock.get(), SIOCSIFFLAGS, &request) != 0) {
      status = ErrnoToStatus(errno, absl::StrCat("set lo up in ", path));
    }
  });
  upper.join();
  return status;
}

absl::Status RemoveNetNs(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("unmount ", path));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("remove ", path));
  }
  return absl::OkStatus();
}

bool IsNetNs(const std::string& path) {
  struct statfs fs;
  return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == NSFS_MAGIC;
}

}  // namespace berth::cni
