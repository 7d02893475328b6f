#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "test/lib/cri_client.h"

namespace berth::testing {

// Runs the installed berthd (path from $BERTHD) as a process with a private temporary root, run
// root, socket, empty CNI conf dir and metrics port, for e2e tests. The destructor kills it (if
// running) and removes everything it made. Not thread-safe.
class BerthDaemon {
 public:
  struct Options {
    std::string extra_yaml;  // appended to the generated config (top-level keys)
    std::vector<std::string> cni_bin_dirs;  // network.bin_dirs; empty = the default
    std::string extra_runtimes;  // more "name: {path: ..., root: ...}" lines under runtimes
    std::string log_level = "debug";
  };

  // Creates the temporary tree and the config; does not start the daemon.
  static absl::StatusOr<std::unique_ptr<BerthDaemon>> Create(Options options);
  static absl::StatusOr<std::unique_ptr<BerthDaemon>> Create() { return Create(Options{}); }
  ~BerthDaemon();
  BerthDaemon(const BerthDaemon&) = delete;
  BerthDaemon& operator=(const BerthDaemon&) = delete;

  // Starts berthd (with `env` entries "K=V" added to its environment) and waits (up to 20 s)
  // until Version answers. If the process exits first, the error carries its exit code and log.
  absl::Status Start(const std::vector<std::string>& env = {});
  // Starts berthd as systemd's socket activation does: `listen_fd` (a listening socket on
  // socket_path()) as its descriptor 3, LISTEN_FDS=1, LISTEN_FDNAMES and LISTEN_PID = its pid.
  // Waits as Start does.
  absl::Status StartActivated(int listen_fd, const std::vector<std::string>& env = {});
  // Sends `signal` and waits for the exit: its exit code (128 + signal if killed).
  absl::StatusOr<int> Stop(int signal = 15, std::chrono::seconds timeout = std::chrono::seconds(20));
  // SIGKILL and reap.
  void Kill();
  // Waits up to `timeout` for berthd to exit by itself (it may kill itself): its exit code (128 +
  // signal if killed); DeadlineExceeded if it still runs.
  absl::StatusOr<int> AwaitExit(std::chrono::milliseconds timeout);
  bool running() const { return pid_ > 0; }

  std::string Log() const;
  CriClient& client() { return *client_; }

  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/berth.yaml"; }
  std::string socket_path() const { return dir_ + "/run/berth.sock"; }
  std::string root() const { return dir_ + "/root"; }
  std::string run_root() const { return dir_ + "/run"; }
  std::string cni_dir() const { return dir_ + "/cni"; }
  std::string log_path() const { return dir_ + "/berthd.log"; }
  const std::string& metrics_address() const { return metrics_address_; }
  const std::string& binary() const { return binary_; }

 private:
  BerthDaemon() = default;
  absl::Status Spawned(absl::StatusOr<pid_t> pid);

  std::string binary_;
  std::string dir_;
  std::string metrics_address_;
  pid_t pid_ = -1;
  std::unique_ptr<CriClient> client_;
};

// The berthd binary under test ($BERTHD). Fails the current test if unset.
std::string BerthdPath();

}  // namespace berth::testing
