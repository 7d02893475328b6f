#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace berth::pod {

// The name of the profile RuntimeDefault (and an unspecified profile) confines containers with.
inline constexpr char kAppArmorDefaultProfile[] = "berth-default";

// The text of the RuntimeDefault profile `name`: everything a container normally does (files,
// network, capabilities its spec grants) but no mount, no writes to the kernel's knobs in /proc
// and /sys (sysctls other than kernel.shm*, sysrq-trigger, kcore, firmware, security), and
// ptrace and signals only among processes confined by the same profile (plus signals from the
// host). The same rules as the default profile Docker and containerd apply.
std::string AppArmorDefaultProfileText(const std::string& name);

// AppArmor on this host, found once: whether the LSM is enabled (`<sys>/module/apparmor/
// parameters/enabled` says Y) and the parser is installed; and, on first use, the default profile
// loaded into the kernel. Thread-safe.
class AppArmor {
 public:
  struct Options {
    std::string sys = "/sys";
    std::string parser = "/sbin/apparmor_parser";  // usrmerge: also /usr/sbin
    std::string profile_dir;                       // where the profile's source is written
    std::string name = kAppArmorDefaultProfile;
  };
  explicit AppArmor(Options options);

  bool enabled() const { return enabled_; }
  // Makes sure the default profile is loaded (once it is, later calls cost nothing; a failure is
  // retried next time): its name, or FailedPrecondition with the parser's message. Unavailable
  // when the host has no AppArmor.
  absl::StatusOr<std::string> DefaultProfile();

 private:
  bool Loaded() const;
  const Options options_;
  const bool enabled_;
  absl::Mutex mu_;
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace berth::pod
