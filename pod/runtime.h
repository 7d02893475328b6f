#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"

namespace berth::pod {

struct ContainerState {
  std::string status;  // "creating", "created", "running", "paused", "stopped"
  pid_t pid = 0;
  std::string bundle;
};

// The calls berthd makes to an OCI runtime itself (create goes through the monitor). Errors are
// Internal carrying the tail of the runtime's stderr; an unknown container is NotFound.
class OciRuntime {
 public:
  virtual ~OciRuntime() = default;
  virtual absl::Status Start(const std::string& id) = 0;
  virtual absl::Status Kill(const std::string& id, int signal, bool all) = 0;
  // Removes the runtime's state; OK for an unknown container.
  virtual absl::Status Delete(const std::string& id, bool force) = 0;
  virtual absl::StatusOr<ContainerState> State(const std::string& id) = 0;
  // Applies an OCI linux.resources object (JSON) to a running container.
  virtual absl::Status Update(const std::string& id, const std::string& resources_json) = 0;
  // The runtime binary and its --root, as the monitor passes them on.
  virtual const std::string& path() const = 0;
  virtual const std::string& root() const = 0;
};
using OciRuntimePtr = std::unique_ptr<OciRuntime>;

// runc and crun share this command line.
class RuncRuntime final : public OciRuntime {
 public:
  RuncRuntime(std::string path, std::string root, bool systemd_cgroup)
      : path_(std::move(path)), root_(std::move(root)), systemd_cgroup_(systemd_cgroup) {}

  absl::Status Start(const std::string& id) override;
  absl::Status Kill(const std::string& id, int signal, bool all) override;
  absl::Status Delete(const std::string& id, bool force) override;
  absl::StatusOr<ContainerState> State(const std::string& id) override;
  absl::Status Update(const std::string& id, const std::string& resources_json) override;
  const std::string& path() const override { return path_; }
  const std::string& root() const override { return root_; }

 private:
  absl::StatusOr<std::string> Run(const std::vector<std::string>& args,
                                  const std::string& stdin_data = "");
  std::string path_;
  std::string root_;
  bool systemd_cgroup_;
};

// The runtime of a configured handler (runc and crun share RuncRuntime), or nullptr if the
// configuration has no such handler.
std::unique_ptr<OciRuntime> RuntimeFor(const config::Config& config, const std::string& handler);
// How the managers get a handler's runtime (RuntimeFor, or a fake in tests).
using RuntimeFactory =
    std::function<std::unique_ptr<OciRuntime>(const config::Config&, const std::string& handler)>;

}  // namespace berth::pod
