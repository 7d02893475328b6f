#include "pod/apparmor.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/process.h"
#include "base/status_macros.h"

namespace berth::pod {
namespace {

constexpr char kProfile[] = R"(# The RuntimeDefault AppArmor profile of berth's containers, written by berthd.
#include <tunables/global>

profile @NAME@ flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>

  # What the container's OCI spec allows is bounded there (capabilities, seccomp, mounts).
  network,
  capability,
  file,
  umount,

  # Signals from the host, and among the processes this profile confines; ptrace only among them.
  signal (receive) peer=unconfined,
  signal (send,receive) peer=@NAME@,
  ptrace (trace,read,tracedby,readby) peer=@NAME@,

  # No mounts of its own.
  deny mount,

  # /proc: nothing written directly in it, nor beneath an entry that is neither a process nor sys.
  deny @{PROC}/* w,
  deny @{PROC}/{[^0-9s]*,s[^y]*,sy[^s]*,sys?*}/** w,
  # Of the sysctls, only kernel.shm* may be written (they are namespaced with IPC).
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/[^s]** w,
  deny @{PROC}/sys/kernel/s[^h]** w,
  deny @{PROC}/sys/kernel/sh[^m]** w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,

  # /sys: nothing written except beneath /sys/fs/cgroup; firmware and security not even read.
  deny /sys/[^f]** wklx,
  deny /sys/f[^s]** wklx,
  deny /sys/fs/[^c]** wklx,
  deny /sys/fs/c[^g]** wklx,
  deny /sys/fs/cg[^r]** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
)";

std::string FirstExecutable(const std::string& preferred) {
  for (const std::string& path : {preferred, std::string("/usr/sbin/apparmor_parser")}) {
    if (!path.empty() && ::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

bool LsmEnabled(const std::string& sys) {
  std::ifstream in(sys + "/module/apparmor/parameters/enabled");
  std::string v;
  return (in >> v) && v == "Y";
}

}  // namespace

std::string AppArmorDefaultProfileText(const std::string& name) {
  return absl::StrReplaceAll(kProfile, {{"@NAME@", name}});
}

AppArmor::AppArmor(Options options)
    : options_([&] {
        options.parser = FirstExecutable(options.parser);
        return options;
      }()),
      enabled_(LsmEnabled(options_.sys) && !options_.parser.empty()) {}

bool AppArmor::Loaded() const {
  std::ifstream in(options_.sys + "/kernel/security/apparmor/profiles");
  std::string line;
  const std::string prefix = options_.name + " (";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

absl::StatusOr<std::string> AppArmor::DefaultProfile() {
  if (!enabled_) return absl::UnavailableError("this host does not have AppArmor enabled");
  absl::MutexLock lock(&mu_);
  if (loaded_) return options_.name;
  if (!Loaded()) {
    const std::string file = options_.profile_dir + "/" + options_.name;
    RETURN_IF_ERROR(MakeDirs(options_.profile_dir, 0700));
    RETURN_IF_ERROR(WriteFileAtomic(file, AppArmorDefaultProfileText(options_.name), 0644));
    // -r replaces a profile of that name (an older berthd's), -K keeps no cache of it.
    ASSIGN_OR_RETURN(ProcessResult r,
                     RunProcess({.argv = {options_.parser, "-Kr", file},
                                 .env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
                                 .timeout = std::chrono::seconds(60)}));
    if (r.exit_code != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("apparmor: loading the default profile ", options_.name, " with ",
                       options_.parser, " failed (exit ", r.exit_code, "): ",
                       Tail(r.stderr_data + r.stdout_data)));
    }
    spdlog::info("apparmor: loaded the default profile {}", options_.name);
  }
  loaded_ = true;
  return options_.name;
}

}  // namespace berth::pod
