#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "test/fixtures/registry.h"
#include "test/lib/berth_daemon.h"

namespace berth::testing {

// What the container e2e tests start from: Debian's docker-registry on loopback serving a
// busybox image, and a running berthd that trusts it, with the image pulled and a CNI bridge
// network of the test's own (each test binary has its bridge and subnet, so that they can run
// side by side).
struct BusyboxEnv {
  struct Options {
    std::string bridge;   // e.g. "berthe2e2"
    std::string subnet;   // e.g. "10.251.4.0/24"
    std::string network;  // the CNI network name
    std::string stop_signal;       // the image's StopSignal, if any
    std::string extra_yaml;        // more berthd configuration (top-level keys)
    std::string extra_runtimes;    // more runtime handlers
    std::string log_level = "debug";  // berthd's (benchmarks want less than every RPC logged)
  };

  std::unique_ptr<TestRegistry> registry;
  std::unique_ptr<BerthDaemon> daemon;
  std::string image;  // <registry>/busybox:1

  // Why this machine cannot run such tests (not root, runc, the bridge plugin, busybox or
  // docker-registry missing), or "" if it can.
  static std::string Unavailable();
  // The registry, the image, berthd (started) and its network; the error says which step failed
  // (with berthd's log once it exists).
  static absl::StatusOr<BusyboxEnv> Start(const Options& options);
  // The parts of Start, for tests that start berthd more than once on one registry: the registry
  // with busybox:1 pushed (with `stop_signal`), and a berthd (not started) that trusts it, with
  // the network of `options`.
  static absl::StatusOr<std::unique_ptr<TestRegistry>> StartRegistry(
      const std::string& stop_signal = "");
  static absl::StatusOr<std::unique_ptr<BerthDaemon>> CreateDaemon(const TestRegistry& registry,
                                                                   const Options& options);
  // Removes the bridge the network's pods used (berthd's CNI DEL leaves it).
  static void RemoveBridge(const std::string& bridge);
};

// A pod config as the e2e tests use it: `name`, namespace "e2e", uid "uid-<name>", its logs in the
// daemon's directory.
runtime::v1::PodSandboxConfig E2ePodConfig(const BerthDaemon& daemon, const std::string& name);

}  // namespace berth::testing
