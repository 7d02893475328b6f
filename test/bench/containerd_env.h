#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "test/lib/cri_client.h"

namespace berth::testing {

// Debian's containerd (with its CRI plugin, runc shim and the host's CNI plugins) started with a
// root, state, socket and CNI config of its own in a temporary directory, for side-by-side
// benchmarks only: never in CI, never a dependency of berth. Its registry mirror sends `registry`
// (host:port on loopback) over plain HTTP; its pause image is `pause_image`. The destructor
// removes every pod, stops containerd, unmounts what it left under its directory and removes it,
// keeping only its log (/tmp/berth-bench-containerd.log).
class ContainerdEnv {
 public:
  static absl::StatusOr<std::unique_ptr<ContainerdEnv>> Start(const std::string& registry,
                                                              const std::string& pause_image,
                                                              const std::string& cni_conflist);
  ~ContainerdEnv();
  ContainerdEnv(const ContainerdEnv&) = delete;
  ContainerdEnv& operator=(const ContainerdEnv&) = delete;

  CriClient& client() { return *client_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }

 private:
  ContainerdEnv() = default;
  std::string dir_;
  pid_t pid_ = 0;
  std::unique_ptr<CriClient> client_;
  // containerd's cgroups for pods with no cgroup parent (/k8s.io in each hierarchy) that did not
  // exist before it started: containerd leaves them behind, the env removes them.
  std::vector<std::string> made_cgroups_;
};

}  // namespace berth::testing
