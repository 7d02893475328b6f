#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "config/loader.h"
#include "config/store.h"
#include "base/service_notifier.h"
#include "base/socket_activation.h"
#include "cri/metrics.h"

namespace berth::cri {

// berthd's life: claims the socket, serves the CRI over gRPC and the metrics over HTTP, reloads the
// configuration on SIGHUP, and shuts down gracefully on SIGTERM/SIGINT. The caller must have blocked
// SIGTERM, SIGINT and SIGHUP in every thread (before any thread exists) so that Run() can wait for
// them. Not thread-safe: one Run() per process.
class Daemon {
 public:
  Daemon(config::LoadOptions load_options, config::Config config);
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Blocks until a SIGTERM or SIGINT has been handled. A start-up failure (socket taken, metrics
  // address in use, directories not creatable) returns its status; a clean shutdown returns OK.
  absl::Status Run();

 private:
  void Reload();

  config::LoadOptions load_options_;
  config::ConfigStore config_;
  Metrics metrics_;
  // systemd's Type=notify: READY, RELOADING, STOPPING and the watchdog. Read (and taken out of
  // the environment) when the daemon is made, before any thread starts.
  const ServiceNotifier notifier_;
  // systemd's socket activation: the sockets passed with LISTEN_FDS, taken (and LISTEN_* taken
  // out of the environment) when the daemon is made, before any thread starts.
  absl::StatusOr<std::vector<InheritedSocket>> inherited_;
};

// Blocks the signals Daemon::Run waits for. Call first thing in main(), before any thread starts.
void BlockDaemonSignals();

}  // namespace berth::cri
