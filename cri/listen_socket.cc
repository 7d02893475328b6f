#include "cri/listen_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/socket_activation.h"
#include "base/status_macros.h"
#include "grpcpp/server_posix.h"
#include "spdlog/spdlog.h"

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

// The exclusive lock on "<path>.lock", with our pid in it.
absl::StatusOr<UniqueFd> LockPath(const std::string& path) {
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
  RETURN_IF_ERROR(WritePid(lock.get(), lock_path));
  return lock;
}

}  // namespace

absl::StatusOr<ListenSocket> ListenSocket::Claim(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd lock, LockPath(path));
  RETURN_IF_ERROR(RemoveStaleSocket(path));
  return ListenSocket(path, std::move(lock), UniqueFd());
}

absl::StatusOr<ListenSocket> ListenSocket::Adopt(const std::string& path, UniqueFd fd) {
  ASSIGN_OR_RETURN(std::string bound, ListeningUnixSocketPath(fd.get()));
  if (bound != path) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the service manager passed a socket on ", bound, ", but berthd is configured to listen on ",
        path, ": make the socket unit's ListenStream= and the configuration's listen agree"));
  }
  ASSIGN_OR_RETURN(UniqueFd lock, LockPath(path));
  return ListenSocket(path, std::move(lock), std::move(fd));
}

absl::StatusOr<ListenSocket> ListenSocket::FromInherited(const std::string& path,
                                                        std::vector<InheritedSocket> inherited) {
  if (inherited.empty()) return Claim(path);
  // One: Adopt says what is wrong with it, if anything.
  if (inherited.size() == 1) return Adopt(path, std::move(inherited[0].fd));
  std::optional<absl::StatusOr<ListenSocket>> ours;
  std::vector<std::string> passed;
  for (InheritedSocket& s : inherited) {
    absl::StatusOr<std::string> bound = ListeningUnixSocketPath(s.fd.get());
    passed.push_back(bound.ok() ? *bound : std::string(bound.status().message()));
    if (bound.ok() && *bound == path && !ours) {
      ours = Adopt(path, std::move(s.fd));
    } else {
      spdlog::warn("socket activation: {} ({}) is not the CRI socket {}: closed", passed.back(),
                   s.name.empty() ? "unnamed" : s.name, path);
    }
  }
  if (!ours) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket activation: none of the sockets passed (", absl::StrJoin(passed, ", "),
        ") is the configured listen socket ", path));
  }
  return std::move(*ours);
}

ListenSocket::~ListenSocket() {
  if (lock_.valid() && !adopted_.valid()) {
    ::unlink(path_.c_str());
  }
}

absl::Status ListenSocket::Secure() const {
  if (adopted_.valid()) {
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0 && (st.st_mode & S_IWOTH) != 0) {
      spdlog::warn("{} is mode {:04o}: every local user can run containers as root; give the "
                   "socket unit SocketMode=0660",
                   path_, st.st_mode & 07777);
    }
    return absl::OkStatus();
  }
  if (::chown(path_.c_str(), 0, 0) != 0 && errno != EPERM) {
    return ErrnoToStatus(errno, absl::StrCat("chown ", path_));
  }
  if (::chmod(path_.c_str(), 0660) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chmod ", path_));
  }
  return absl::OkStatus();
}

SocketAcceptor::~SocketAcceptor() { Stop(); }

absl::Status SocketAcceptor::Start(int listen_fd, grpc::Server* server) {
  wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) return ErrnoToStatus(errno, "eventfd");
  thread_ = std::thread([this, listen_fd, server] { Loop(listen_fd, server); });
  return absl::OkStatus();
}

void SocketAcceptor::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void SocketAcceptor::Loop(int listen_fd, grpc::Server* server) {
  // A berthd that can accept no more is of no use to kubelet: it shuts down (SIGTERM to itself,
  // which its main loop waits for), and systemd's Restart= starts one that can.
  auto give_up = [this](const std::string& why) {
    spdlog::error("CRI socket: {}: shutting down so that the service manager restarts berthd", why);
    failed_ = true;
    ::kill(::getpid(), SIGTERM);
  };
  for (;;) {
    pollfd fds[2] = {{.fd = listen_fd, .events = POLLIN, .revents = 0},
                     {.fd = wake_.get(), .events = POLLIN, .revents = 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      give_up(absl::StrCat("poll: ", std::strerror(errno)));
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      give_up(absl::StrCat("the inherited socket failed (poll events ", fds[0].revents, ")"));
      return;
    }
    // The socket itself stays blocking: its file description is shared with the service manager.
    // Only berthd accepts from it, so a connection poll announced is there to take.
    const int conn = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      spdlog::error("CRI socket: accept: {}", std::strerror(errno));
      // Out of descriptors (EMFILE, ENFILE) or memory: the connection waits in the queue; do not
      // spin on it.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    grpc::AddInsecureChannelFromFd(server, conn);  // gRPC owns `conn` from here
  }
}

}  // namespace berth::cri
