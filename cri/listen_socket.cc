#include "cri/listen_socket.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/status_macros.h"

namespace berth::cri {
namespace {

// True if a process accepts connections on the unix socket at path.
bool SomeoneListens(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (!fd.valid() || path.size() >= sizeof(addr.sun_path)) {
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

absl::Status RemoveStaleSocket(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? absl::OkStatus() : ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket"));
  }
  if (SomeoneListens(path)) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, " is already in use by another process"));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("remove stale socket ", path));
  }
  return absl::OkStatus();
}

absl::Status WritePid(int fd, const std::string& lock_path) {
  std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    return ErrnoToStatus(errno, absl::StrCat("write ", lock_path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ListenSocket> ListenSocket::Claim(const std::string& path) {
  RETURN_IF_ERROR(MakeDirs(DirName(path), 0755));
  std::string lock_path = absl::StrCat(path, ".lock");
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("open ", lock_path));
  }
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      return ErrnoToStatus(errno, absl::StrCat("lock ", lock_path));
    }
    auto holder = ReadFile(lock_path);
    std::string pid = holder.ok() ? std::string(absl::StripAsciiWhitespace(*holder)) : "?";
    return absl::FailedPreconditionError(
        absl::StrCat("another berthd (pid ", pid, ") is already serving ", path));
  }
  RETURN_IF_ERROR(RemoveStaleSocket(path));
  RETURN_IF_ERROR(WritePid(lock.get(), lock_path));
  return ListenSocket(path, std::move(lock));
}

ListenSocket::~ListenSocket() {
  if (lock_.valid()) {
    ::unlink(path_.c_str());
  }
}

absl::Status ListenSocket::Secure() const {
  if (::chown(path_.c_str(), 0, 0) != 0 && errno != EPERM) {
    return ErrnoToStatus(errno, absl::StrCat("chown ", path_));
  }
  if (::chmod(path_.c_str(), 0660) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chmod ", path_));
  }
  return absl::OkStatus();
}

}  // namespace berth::cri
