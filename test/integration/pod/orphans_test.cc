// The orphan sweep at start with real parts: runc containers, tmpfs mounts, pinned network
// namespaces and per-id files, some of them explained by a record (known ids), some not, and one
// runc container that is not berth's at all.

#include "pod/orphans.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/mount.h"
#include "base/process.h"
#include "cni/netns.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pod/oci_spec.h"
#include "pod/runtime.h"
#include "test/lib/eventually.h"

namespace berth::pod {
namespace {

using ::berth::testing::Eventually;
using ::testing::ElementsAre;

namespace fs = std::filesystem;

// Records the DELs; the cache says which attachments exist.
class RecordingNetwork final : public cni::NetworkPlugin {
 public:
  explicit RecordingNetwork(std::vector<std::string> cached) : cached_(std::move(cached)) {}
  absl::StatusOr<cni::Attachment> Attach(const cni::NetworkConf&, const cni::AttachSpec&) override {
    return absl::UnimplementedError("not in this test");
  }
  absl::Status Detach(const cni::AttachSpec& spec) override {
    detached.push_back(spec.container_id);
    return absl::OkStatus();
  }
  absl::Status Check(const cni::AttachSpec&) override { return absl::OkStatus(); }
  absl::StatusOr<cni::Attachment> Cached(const std::string&, const std::string&) override {
    return absl::NotFoundError("not in this test");
  }
  std::vector<cni::AttachSpec> CachedAttachments() override {
    std::vector<cni::AttachSpec> out;
    for (const std::string& id : cached_) out.push_back({.container_id = id});
    return out;
  }
  std::vector<std::string> detached;

 private:
  std::vector<std::string> cached_;
};

class OrphanSweepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "containers and mounts need root";
    if (::access("/usr/sbin/runc", X_OK) != 0) GTEST_SKIP() << "runc is not installed";
    char tmpl[] = "/tmp/berth-orphans-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_.root = dir_ + "/root";
    config_.run_root = dir_ + "/run";
    config_.runtimes = {{"runc", {"/usr/sbin/runc", dir_ + "/run/runc"}}};
    config_.default_runtime = "runc";
    for (const char* d : {"rootfs/proc", "rootfs/dev", "rootfs/sys", "rootfs/etc"}) {
      ASSERT_TRUE(MakeDirs(dir_ + "/" + d).ok());
    }
    fs::copy_file(BERTH_PAUSE_PATH, dir_ + "/rootfs/pause");
    runtime_ = RuntimeFor(config_, "runc");
  }

  void TearDown() override {
    if (dir_.empty()) return;
    for (const char* id : {"orphan1", "known1", "foreign1"}) (void)runtime_->Delete(id, true);
    std::vector<std::string> mounts = MountPointsUnder(dir_);
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) (void)Unmount(*it);
    for (const char* id : {"orphan1", "known1"}) {
      (void)cni::RemoveNetNs(absl::StrCat(dir_, "/run/netns/", id));
    }
    fs::remove_all(dir_);
  }

  // A running pause container `id` with its bundle at `bundle`, started by runc directly.
  void RunPause(const std::string& id, const std::string& bundle) {
    absl::StatusOr<std::string> spec = PauseSpec({.rootfs = dir_ + "/rootfs",
                                                  .hostname = id,
                                                  .oom_score_adj = ClampOomScoreAdj(-998)});
    ASSERT_TRUE(spec.ok()) << spec.status();
    ASSERT_TRUE(MakeDirs(bundle).ok());
    ASSERT_TRUE(WriteFileAtomic(bundle + "/config.json", *spec).ok());
    // The container inherits runc's stdio: not our pipes, or reading them would never end.
    absl::StatusOr<ProcessResult> run = RunProcess(
        {.argv = {"/bin/sh", "-c",
                  absl::StrCat("exec /usr/sbin/runc --root ", dir_, "/run/runc run --detach ",
                               "--bundle ", bundle, " ", id, " </dev/null >/dev/null 2>", dir_,
                               "/runc.err")},
         .timeout = std::chrono::seconds(20)});
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_EQ(run->exit_code, 0) << ReadFile(dir_ + "/runc.err").value_or("");
  }

  void Tmpfs(const std::string& target) {
    absl::StatusOr<ScopedMount> m = ScopedMount::Tmpfs(target, MS_NOSUID, "size=1m");
    ASSERT_TRUE(m.ok()) << m.status();
    m->Release();
  }

  void Touch(const std::string& path) {
    ASSERT_TRUE(MakeDirs(fs::path(path).parent_path().string()).ok());
    ASSERT_TRUE(WriteFileAtomic(path, "x").ok());
  }

  std::string dir_;
  config::Config config_;
  std::unique_ptr<OciRuntime> runtime_;
};

TEST_F(OrphanSweepTest, RemovesWhatNoRecordExplainsAndNothingElse) {
  const std::string root = config_.root, run = config_.run_root;
  RunPause("orphan1", root + "/sandboxes/orphan1");
  RunPause("known1", root + "/sandboxes/known1");
  RunPause("foreign1", dir_ + "/not-berths/foreign1");
  for (const char* id : {"orphan1", "known1"}) {
    Tmpfs(absl::StrCat(run, "/pods/", id, "/shm"));
    Tmpfs(absl::StrCat(root, "/containers/c-", id, "/rootfs"));
    absl::StatusOr<cni::NetNs> netns = cni::NetNs::Create(absl::StrCat(run, "/netns/", id));
    ASSERT_TRUE(netns.ok()) << netns.status();
    netns->Release();
    Touch(absl::StrCat(run, "/exits/", id));
    Touch(absl::StrCat(run, "/monitor/", id, "/oom"));
    Touch(absl::StrCat(run, "/socks/", id, "/attach"));
    Touch(absl::StrCat(root, "/logs/", id, "/0.log"));
  }
  Touch(run + "/exits/orphan2.tmp");
  Touch(run + "/exec/exec-123/pidfile");
  RecordingNetwork network({"orphan1", "known1"});

  const SweepReport report =
      SweepOrphans(config_, {"known1", "c-known1"}, &network);

  EXPECT_THAT(network.detached, ElementsAre("orphan1"));
  EXPECT_EQ(report.runtime_containers, 1);
  EXPECT_EQ(report.network_attachments, 1);
  EXPECT_EQ(report.mounts, 3);  // shm, rootfs, netns of orphan1
  EXPECT_FALSE(runtime_->State("orphan1").ok());
  EXPECT_EQ(runtime_->State("known1")->status, "running");
  EXPECT_EQ(runtime_->State("foreign1")->status, "running");
  EXPECT_FALSE(fs::exists(root + "/sandboxes/orphan1"));
  EXPECT_TRUE(fs::exists(root + "/sandboxes/known1/config.json"));
  EXPECT_TRUE(fs::exists(dir_ + "/not-berths/foreign1/config.json"));
  for (const char* sub : {"/pods/", "/netns/", "/exits/", "/monitor/", "/socks/"}) {
    EXPECT_FALSE(fs::exists(absl::StrCat(run, sub, "orphan1"))) << sub;
    EXPECT_TRUE(fs::exists(absl::StrCat(run, sub, "known1"))) << sub;
  }
  EXPECT_FALSE(fs::exists(root + "/containers/c-orphan1"));
  EXPECT_FALSE(fs::exists(root + "/logs/orphan1"));
  EXPECT_FALSE(fs::exists(run + "/exits/orphan2.tmp"));
  EXPECT_FALSE(fs::exists(run + "/exec/exec-123"));
  EXPECT_TRUE(IsMountPoint(run + "/pods/known1/shm"));
  EXPECT_TRUE(IsMountPoint(root + "/containers/c-known1/rootfs"));
  EXPECT_TRUE(cni::IsNetNs(run + "/netns/known1"));
  EXPECT_THAT(MountPointsUnder(dir_ + "/run/pods"), ElementsAre(run + "/pods/known1/shm"));

  // A second sweep finds nothing more.
  RecordingNetwork again({"known1"});
  EXPECT_EQ(SweepOrphans(config_, {"known1", "c-known1"}, &again).Total(), 0);
}

// ExecSync runs the runtime from berthd: a killed berthd leaves the command running, and the sweep
// ends it, but only if the pid file still names that process, not a later one with its number.
TEST_F(OrphanSweepTest, EndsTheProcessesOfExecsAKilledBerthdLeft) {
  absl::StatusOr<pid_t> left = SpawnProcess({.argv = {"/bin/sleep", "1000"}});
  ASSERT_TRUE(left.ok()) << left.status();
  absl::StatusOr<pid_t> later = SpawnProcess({.argv = {"/bin/sleep", "1000"}});
  ASSERT_TRUE(later.ok()) << later.status();
  auto reap = [](pid_t pid) {
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  };
  const std::string run = config_.run_root;
  Touch(run + "/exec/exec-1/process.json");
  ASSERT_TRUE(WriteFileAtomic(run + "/exec/exec-1/pid", std::to_string(*left)).ok());
  // A pid file an hour older than the process it names: the number was reused.
  Touch(run + "/exec/session-2/process.json");
  ASSERT_TRUE(WriteFileAtomic(run + "/exec/session-2/pid", std::to_string(*later)).ok());
  fs::last_write_time(run + "/exec/session-2/pid",
                      fs::last_write_time(run + "/exec/session-2/pid") - std::chrono::hours(1));

  RecordingNetwork network({});
  SweepOrphans(config_, {}, &network);

  int status = 0;
  const bool ended = Eventually([&] { return ::waitpid(*left, &status, WNOHANG) == *left; });
  EXPECT_TRUE(ended) << "the exec's process was not ended";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_EQ(::waitpid(*later, &status, WNOHANG), 0) << "a process that only got the pid was ended";
  EXPECT_FALSE(fs::exists(run + "/exec/exec-1"));
  EXPECT_FALSE(fs::exists(run + "/exec/session-2"));
  if (!ended) reap(*left);
  reap(*later);
}

}  // namespace
}  // namespace berth::pod
