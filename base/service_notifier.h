#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace berth {

// systemd's service notification protocol (sd_notify(3)): one datagram of "KEY=VALUE" lines to
// the unix socket named by $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). Written
// out rather than taken from libsystemd: the protocol is one sendto(), systemd documents it as
// stable for reimplementation, and libsystemd would map six more libraries into berthd (liblz4,
// liblzma, libzstd, libgcrypt, libgpg-error, libcap) for it.
class ServiceNotifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and removes them from the environment, so
  // that no child (a monitor, the OCI runtime, which passes NOTIFY_SOCKET into containers) sees
  // them. Call before any thread starts. Without NOTIFY_SOCKET every Notify is a no-op.
  static ServiceNotifier FromEnvironment();

  // Sends `state`, e.g. "READY=1" or "STOPPING=1". Errors are the caller's to log.
  absl::Status Notify(absl::string_view state) const;
  // "RELOADING=1" with the MONOTONIC_USEC systemd 253 and later ask for.
  absl::Status NotifyReloading() const;
  // How often the watchdog wants "WATCHDOG=1" (half its timeout, as sd_watchdog_enabled
  // advises), if the service manager set one for this process.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_; }

 private:
  std::string socket_;
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace berth
