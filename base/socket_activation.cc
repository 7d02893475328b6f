#include "base/socket_activation.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"

namespace berth {
namespace {

// sd_listen_fds(3): the first passed descriptor.
constexpr int kFirstInheritedFd = 3;
// More than any unit passes; a bound on what a corrupt environment makes us touch.
constexpr int kMaxInheritedFds = 64;

std::string Env(const char* name) {
  const char* value = ::getenv(name);
  return value != nullptr ? value : "";
}

}  // namespace

absl::StatusOr<std::vector<InheritedSocket>> TakeInheritedSockets() {
  const std::string pid = Env("LISTEN_PID");
  const std::string count = Env("LISTEN_FDS");
  const std::string names = Env("LISTEN_FDNAMES");
  for (const char* name : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) ::unsetenv(name);
  std::vector<InheritedSocket> sockets;
  if (count.empty()) return sockets;
  int for_pid = 0;
  // Meant for the process that was started, which may have started us (a wrapper that did not
  // exec): not ours to take.
  if (!absl::SimpleAtoi(pid, &for_pid) || for_pid != ::getpid()) return sockets;
  int n = 0;
  if (!absl::SimpleAtoi(count, &n) || n < 0 || n > kMaxInheritedFds) {
    return absl::InvalidArgumentError(
        absl::StrCat("LISTEN_FDS=", count, " is not a number of descriptors"));
  }
  std::vector<std::string> labels =
      names.empty() ? std::vector<std::string>() : absl::StrSplit(names, ':');
  for (int i = 0; i < n; ++i) {
    const int fd = kFirstInheritedFd + i;
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("LISTEN_FDS=", n, ": descriptor ", fd));
    }
    sockets.push_back({.fd = UniqueFd(fd),
                       .name = static_cast<size_t>(i) < labels.size() ? labels[i] : ""});
  }
  return sockets;
}

absl::StatusOr<std::string> ListeningUnixSocketPath(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return errno == ENOTSOCK
               ? absl::InvalidArgumentError(absl::StrCat("descriptor ", fd, " is not a socket"))
               : ErrnoToStatus(errno, absl::StrCat("getsockname of descriptor ", fd));
  }
  int type = 0;
  int listening = 0;
  socklen_t size = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("SO_TYPE of descriptor ", fd));
  }
  size = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("SO_ACCEPTCONN of descriptor ", fd));
  }
  if (addr.sun_family != AF_UNIX || type != SOCK_STREAM) {
    return absl::InvalidArgumentError(
        absl::StrCat("descriptor ", fd, " is not a unix stream socket"));
  }
  const size_t path_len = len > offsetof(sockaddr_un, sun_path)
                              ? ::strnlen(addr.sun_path, len - offsetof(sockaddr_un, sun_path))
                              : 0;
  if (path_len == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("descriptor ", fd, " is an unnamed or abstract unix socket"));
  }
  if (!listening) {
    return absl::InvalidArgumentError(absl::StrCat("descriptor ", fd, " (",
                                                   std::string(addr.sun_path, path_len),
                                                   ") is not listening"));
  }
  return std::string(addr.sun_path, path_len);
}

}  // namespace berth
