#include "cri/helpers.h"

#include <unistd.h>

#include <climits>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"

namespace berth::cri {
namespace {

std::string LibexecDir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) {
    return "/usr/libexec/berth";
  }
  std::string bin_dir = DirName(std::string(buf, static_cast<size_t>(n)));
  return absl::StrCat(DirName(bin_dir), "/libexec/berth");
}

}  // namespace

HelperPaths ResolveHelpers(const config::Config& config) {
  std::string libexec = LibexecDir();
  HelperPaths paths;
  paths.monitor =
      config.monitor.path.empty() ? absl::StrCat(libexec, "/berth-conmon") : config.monitor.path;
  paths.pause = absl::StrCat(libexec, "/berth-pause");
  paths.fetch = absl::StrCat(libexec, "/berth-fetch");
  paths.exec = absl::StrCat(libexec, "/berth-exec");
  return paths;
}

}  // namespace berth::cri

namespace berth::cri {

absl::Status PreparePauseRootfs(const std::string& dir, const std::string& pause_binary) {
  absl::StatusOr<std::string> binary = ReadFile(pause_binary);
  if (!binary.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("pause binary ", pause_binary, ": ", binary.status().message()));
  }
  for (const char* sub : {"/proc", "/dev", "/sys", "/etc"}) {
    if (absl::Status s = MakeDirs(dir + sub, 0755); !s.ok()) return s;
  }
  return WriteFileAtomic(dir + "/pause", *binary, 0755);
}

}  // namespace berth::cri
