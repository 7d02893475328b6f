#include "base/service_notifier.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/unique_fd.h"

namespace berth {

ServiceNotifier ServiceNotifier::FromEnvironment() {
  ServiceNotifier n;
  if (const char* socket = ::getenv("NOTIFY_SOCKET"); socket != nullptr) n.socket_ = socket;
  const char* usec = ::getenv("WATCHDOG_USEC");
  const char* pid = ::getenv("WATCHDOG_PID");
  int64_t timeout = 0;
  int watchdog_pid = 0;
  if (usec != nullptr && absl::SimpleAtoi(usec, &timeout) && timeout > 0 &&
      (pid == nullptr || (absl::SimpleAtoi(pid, &watchdog_pid) && watchdog_pid == ::getpid()))) {
    n.watchdog_ = std::chrono::microseconds(timeout / 2);
  }
  for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) ::unsetenv(name);
  return n;
}

absl::Status ServiceNotifier::Notify(absl::string_view state) const {
  if (socket_.empty()) return absl::OkStatus();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_.size() >= sizeof(addr.sun_path) || (socket_[0] != '/' && socket_[0] != '@')) {
    return absl::InvalidArgumentError(absl::StrCat("NOTIFY_SOCKET ", socket_, " is not usable"));
  }
  std::memcpy(addr.sun_path, socket_.data(), socket_.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // the abstract namespace
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(errno, "socket");
  if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&addr), len) < 0) {
    return ErrnoToStatus(errno, absl::StrCat("notify ", socket_));
  }
  return absl::OkStatus();
}

absl::Status ServiceNotifier::NotifyReloading() const {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return Notify(absl::StrCat("RELOADING=1\nMONOTONIC_USEC=",
                             static_cast<int64_t>(now.tv_sec) * 1000000 + now.tv_nsec / 1000));
}

}  // namespace berth
