#include "test/bench/containerd_env.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/file_util.h"
#include "test/lib/process.h"

namespace berth::testing {
namespace {

constexpr char kContainerd[] = "/usr/bin/containerd";
constexpr char kLogCopy[] = "/tmp/berth-bench-containerd.log";

// Mount points under `dir` (longest first, so that nested ones go before their parents).
std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() > 4 && fields[4].rfind(dir + "/", 0) == 0) out.push_back(fields[4]);
  }
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

// Where containerd puts the cgroups of pods with no cgroup parent: /k8s.io in the unified
// hierarchy, or in every v1 hierarchy.
std::vector<std::string> NamespaceCgroups() {
  std::vector<std::string> out = {"/sys/fs/cgroup/k8s.io"};
  if (::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) return out;  // cgroup v2
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/fs/cgroup", ec)) {
    if (entry.is_directory(ec) && !entry.is_symlink(ec)) {
      out.push_back(entry.path().string() + "/k8s.io");
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ContainerdEnv>> ContainerdEnv::Start(
    const std::string& registry, const std::string& pause_image, const std::string& cni_conflist) {
  if (::access(kContainerd, X_OK) != 0) return absl::NotFoundError("containerd is not installed");
  std::unique_ptr<ContainerdEnv> env(new ContainerdEnv());
  char tmpl[] = "/tmp/berth-bench-containerd.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp");
  env->dir_ = tmpl;
  for (const std::string& cgroup : NamespaceCgroups()) {
    if (::access(cgroup.c_str(), F_OK) != 0) env->made_cgroups_.push_back(cgroup);
  }
  const std::string& d = env->dir_;
  const std::string cri = "plugins.\"io.containerd.grpc.v1.cri\"";
  const std::string config = absl::StrCat(
      "version = 2\n",
      "root = \"", d, "/root\"\n",
      "state = \"", d, "/state\"\n",
      "[grpc]\n  address = \"", d, "/containerd.sock\"\n",
      "[ttrpc]\n  address = \"", d, "/containerd.sock.ttrpc\"\n",
      "[debug]\n  address = \"\"\n",
      "[metrics]\n  address = \"\"\n",
      "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"", d, "/opt\"\n",
      "[", cri, "]\n  sandbox_image = \"", pause_image, "\"\n",
      "  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n",
      // As berth clamps: a sandbox may not lower oom_score_adj below containerd's own.
      "  restrict_oom_score_adj = true\n",
      "[", cri, ".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"", d, "/net.d\"\n",
      "[", cri, ".registry.mirrors.\"", registry, "\"]\n  endpoint = [\"http://", registry,
      "\"]\n");
  if (absl::Status s = MakeDirs(d + "/net.d", 0755); !s.ok()) return s;
  if (absl::Status s = WriteFileAtomic(d + "/config.toml", config); !s.ok()) return s;
  if (absl::Status s = WriteFileAtomic(d + "/net.d/10-bench.conflist", cni_conflist); !s.ok()) {
    return s;
  }
  absl::StatusOr<pid_t> pid =
      SpawnWithLog({kContainerd, "--config", d + "/config.toml"}, d + "/containerd.log");
  if (!pid.ok()) return pid.status();
  env->pid_ = *pid;
  env->client_ = std::make_unique<CriClient>(d + "/containerd.sock");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!env->client_->Version().ok()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("containerd did not serve its CRI in 30 s; see ", d, "/containerd.log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return env;
}

ContainerdEnv::~ContainerdEnv() {
  if (client_) (void)client_->RemoveAllPodSandboxes();
  client_.reset();
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!WaitFor(pid_, std::chrono::seconds(20)).ok()) {
      ::kill(pid_, SIGKILL);
      (void)WaitFor(pid_, std::chrono::seconds(10));
    }
  }
  for (const std::string& cgroup : made_cgroups_) ::rmdir(cgroup.c_str());  // empty by now
  if (dir_.empty()) return;
  // Its log outlives it, for a failure to be looked into.
  std::error_code ec;
  std::filesystem::copy_file(dir_ + "/containerd.log", kLogCopy,
                             std::filesystem::copy_options::overwrite_existing, ec);
  for (const std::string& mount : MountsUnder(dir_)) ::umount2(mount.c_str(), MNT_DETACH);
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace berth::testing
