// A pod's pause container end to end with real parts: a pinned network namespace wired by the CNI
// bridge plugin, the pod's files and /dev/shm, the spec, Debian's conmon as the monitor, and runc.

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/mount.h"
#include "base/process.h"
#include "cni/conf.h"
#include "cni/netns.h"
#include "cni/plugin.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pod/monitor.h"
#include "pod/oci_spec.h"
#include "pod/pod_files.h"
#include "pod/runtime.h"

namespace berth::pod {
namespace {

using ::testing::HasSubstr;

constexpr char kBridge[] = "berthit1";

ino_t Inode(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

std::string Shell(const std::vector<std::string>& argv) {
  ProcessSpec spec{.argv = argv, .env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
                   .timeout = std::chrono::seconds(20)};
  absl::StatusOr<ProcessResult> r = RunProcess(spec);
  return r.ok() ? r->stdout_data + r->stderr_data : std::string(r.status().message());
}

class PauseContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
    for (const char* tool : {"/usr/sbin/runc", "/usr/bin/conmon", "/usr/lib/cni/bridge"}) {
      if (::access(tool, X_OK) != 0) GTEST_SKIP() << tool << " is not installed";
    }
    char tmpl[] = "/tmp/berth-pause-container-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    id_ = absl::StrCat("berthtest", ::getpid());
    // The shared pause root filesystem: the static binary and mount points.
    for (const char* d : {"rootfs/proc", "rootfs/dev", "rootfs/sys", "rootfs/etc"}) {
      ASSERT_TRUE(MakeDirs(dir_ + "/" + d).ok());
    }
    std::filesystem::copy_file(BERTH_PAUSE_PATH, dir_ + "/rootfs/pause");
    runtime_ = std::make_unique<RuncRuntime>("/usr/sbin/runc", dir_ + "/runc", false);
  }

  void TearDown() override {
    if (dir_.empty()) return;
    if (runtime_) (void)runtime_->Delete(id_, /*force=*/true);
    if (plugin_) (void)plugin_->Detach(attach_);
    (void)cni::RemoveNetNs(dir_ + "/netns");
    (void)Unmount(dir_ + "/pod/shm");
    if (::access(("/sys/class/net/" + std::string(kBridge)).c_str(), F_OK) == 0) {
      Shell({"/usr/sbin/ip", "link", "del", kBridge});
    }
    std::filesystem::remove_all(dir_);
  }

  std::string dir_, id_;
  std::unique_ptr<RuncRuntime> runtime_;
  std::unique_ptr<cni::CniExecPlugin> plugin_;
  cni::AttachSpec attach_;
};

TEST_F(PauseContainerTest, RunsInThePodNamespacesAndStopsCleanly) {
  // Network: a pinned namespace on a bridge of the test's own.
  absl::StatusOr<cni::NetNs> netns = cni::NetNs::Create(dir_ + "/netns");
  ASSERT_TRUE(netns.ok()) << netns.status();
  netns->Release();
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/net.conflist", absl::StrCat(R"({"cniVersion": "1.0.0",
      "name": "berth-pause-it", "plugins": [{"type": "bridge", "bridge": ")", kBridge,
      R"(", "isGateway": true, "ipam": {"type": "host-local", "dataDir": ")", dir_,
      R"(/ipam", "ranges": [[{"subnet": "10.253.7.0/24"}]]}}, {"type": "loopback"}]})")).ok());
  absl::StatusOr<cni::NetworkConf> network = cni::LoadNetworkConf(dir_ + "/net.conflist");
  ASSERT_TRUE(network.ok()) << network.status();
  plugin_ = std::make_unique<cni::CniExecPlugin>(cni::CniExecPlugin::Options{
      .bin_dirs = {"/usr/lib/cni"}, .cache_dir = dir_ + "/cni-cache"});
  attach_ = {.container_id = id_, .netns_path = dir_ + "/netns"};
  absl::StatusOr<cni::Attachment> attached = plugin_->Attach(*network, attach_);
  ASSERT_TRUE(attached.ok()) << attached.status();

  // The pod's files and /dev/shm.
  ASSERT_TRUE(WritePodFiles(dir_ + "/pod", "pause-it", std::nullopt).ok());
  absl::StatusOr<ScopedMount> shm = ScopedMount::Tmpfs(
      dir_ + "/pod/shm", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
  ASSERT_TRUE(shm.ok()) << shm.status();

  // The bundle.
  PauseSpecOptions options{.rootfs = dir_ + "/rootfs",
                           .hostname = "pause-it",
                           .netns_path = dir_ + "/netns",
                           .shm_path = dir_ + "/pod/shm",
                           .oom_score_adj = ClampOomScoreAdj(-998)};
  absl::StatusOr<std::string> spec = PauseSpec(options);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_TRUE(MakeDirs(dir_ + "/bundle").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/bundle/config.json", *spec).ok());

  ConmonMonitor monitor("/usr/bin/conmon", runtime_.get(), false, std::chrono::seconds(30));
  absl::StatusOr<pid_t> pid = monitor.Create({.id = id_,
                                              .name = "pause",
                                              .bundle = dir_ + "/bundle",
                                              .log_path = dir_ + "/logs/pause.log",
                                              .exit_dir = dir_ + "/exits",
                                              .persist_dir = dir_ + "/persist",
                                              .socket_dir = dir_ + "/socks"});
  ASSERT_TRUE(pid.ok()) << pid.status();
  absl::StatusOr<ContainerState> state = runtime_->State(id_);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->status, "created");
  EXPECT_EQ(state->pid, *pid);
  ASSERT_TRUE(runtime_->Start(id_).ok());
  EXPECT_EQ(runtime_->State(id_)->status, "running");

  const std::string proc = absl::StrCat("/proc/", *pid, "/ns/");
  EXPECT_EQ(Inode(proc + "net"), Inode(dir_ + "/netns"));
  for (const char* ns : {"ipc", "uts", "pid", "mnt"}) {
    EXPECT_NE(Inode(proc + ns), Inode(std::string("/proc/self/ns/") + ns)) << ns;
  }
  EXPECT_THAT(Shell({"/usr/bin/nsenter", "--target", std::to_string(*pid), "--uts",
                     "/bin/hostname"}),
              HasSubstr("pause-it"));
  EXPECT_THAT(Shell({"/usr/bin/nsenter", "--net=" + dir_ + "/netns", "/usr/sbin/ip", "-o",
                     "addr", "show", "eth0"}),
              HasSubstr(attached->ips[0].address));

  // SIGTERM: berth-pause exits 0 and conmon writes the exit file.
  ASSERT_TRUE(runtime_->Kill(id_, SIGTERM, false).ok());
  const std::string exit_file = dir_ + "/exits/" + id_;
  for (int i = 0; i < 500 && !std::filesystem::exists(exit_file); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  absl::StatusOr<std::string> code = ReadFile(exit_file);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, "0");
  EXPECT_EQ(runtime_->State(id_)->status, "stopped");
  ASSERT_TRUE(runtime_->Delete(id_, false).ok());
  EXPECT_EQ(runtime_->State(id_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(runtime_->Delete(id_, false).ok());  // unknown: OK
}

TEST_F(PauseContainerTest, RuntimeFailureIsReported) {
  // A spec naming a binary the rootfs does not have: runc create fails inside conmon.
  PauseSpecOptions options{.rootfs = dir_ + "/rootfs", .args = {"/missing"}, .hostname = "x",
                           .oom_score_adj = ClampOomScoreAdj(0)};
  ASSERT_TRUE(MakeDirs(dir_ + "/bundle").ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/bundle/config.json", *PauseSpec(options)).ok());
  ConmonMonitor monitor("/usr/bin/conmon", runtime_.get(), false, std::chrono::seconds(30));
  absl::StatusOr<pid_t> pid = monitor.Create({.id = id_,
                                              .bundle = dir_ + "/bundle",
                                              .log_path = dir_ + "/logs/x.log",
                                              .exit_dir = dir_ + "/exits",
                                              .persist_dir = dir_ + "/persist",
                                              .socket_dir = dir_ + "/socks"});
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kInternal) << pid.status();
  EXPECT_THAT(std::string(pid.status().message()), HasSubstr("/missing"));
}

}  // namespace
}  // namespace berth::pod
