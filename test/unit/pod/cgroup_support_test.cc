#include "pod/cgroup_support.h"

#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// Fake /sys/fs/cgroup, /proc/self/cgroup and /sys/kernel/mm/hugepages trees in a temporary
// directory.
class CgroupProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-cgroup-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    paths_ = {.cgroup_root = dir_ + "/cgroup",
              .self_cgroup = dir_ + "/self-cgroup",
              .hugepages = dir_ + "/hugepages"};
    ASSERT_TRUE(MakeDirs(paths_.cgroup_root).ok());
    for (const char* size : {"hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB"}) {
      ASSERT_TRUE(MakeDirs(paths_.hugepages + "/" + size).ok());
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void File(const std::string& path, const std::string& content = "") {
    const std::string full = paths_.cgroup_root + "/" + path;
    ASSERT_TRUE(MakeDirs(DirName(full)).ok());
    ASSERT_TRUE(WriteFileAtomic(full, content).ok());
  }
  void Dir(const std::string& path) { ASSERT_TRUE(MakeDirs(paths_.cgroup_root + "/" + path).ok()); }
  void SelfCgroup(const std::string& content) {
    ASSERT_TRUE(WriteFileAtomic(paths_.self_cgroup, content).ok());
  }

  // The v1 hierarchies of this host, as /proc/self/cgroup lists them.
  void V1Tree() {
    for (const char* h :
         {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd"}) {
      Dir(h);
    }
    SelfCgroup(
        "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
        "4:memory:/process_api/x\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n");
  }

  std::string dir_;
  CgroupProbePaths paths_;
};

TEST_F(CgroupProbeTest, V1WithoutHugetlbOrSwapAccounting) {
  V1Tree();
  File("cpu/cpu.rt_runtime_us", "950000");
  File("blkio/blkio.throttle.read_bps_device");
  CgroupSupport s = ProbeCgroupSupport(paths_);
  EXPECT_EQ(s.mode, CgroupMode::kV1);
  EXPECT_EQ(s.root, paths_.cgroup_root);
  EXPECT_THAT(s.v1_controllers,
              UnorderedElementsAre("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer",
                                   "blkio", "pids", "name=systemd"));
  EXPECT_TRUE(s.Has("memory"));
  EXPECT_FALSE(s.Has("hugetlb"));
  EXPECT_FALSE(s.swap);
  EXPECT_TRUE(s.cpu_rt);
  EXPECT_FALSE(s.io_weight);  // neither CFQ nor BFQ
  EXPECT_THAT(s.hugepage_sizes, ElementsAre("64KB", "2MB", "1GB"));
}

TEST_F(CgroupProbeTest, HybridWithHugetlbOnlyOnTheUnifiedMount) {
  V1Tree();
  File("unified/cgroup.controllers", "hugetlb\n");
  // Swap accounting shows in the root; BFQ's weight only below it.
  File("memory/memory.memsw.limit_in_bytes", "9223372036854771712");
  File("blkio/kubepods/blkio.bfq.weight", "100");
  CgroupSupport s = ProbeCgroupSupport(paths_);
  EXPECT_EQ(s.mode, CgroupMode::kHybrid);
  EXPECT_THAT(s.v2_controllers, ElementsAre("hugetlb"));
  EXPECT_FALSE(s.Has("hugetlb"));  // runc in v1 mode needs the v1 hierarchy
  EXPECT_TRUE(s.swap);
  EXPECT_TRUE(s.io_weight);
  EXPECT_FALSE(s.cpu_rt);
  EXPECT_THAT(s.Describe(), ::testing::HasSubstr("hybrid"));
}

TEST_F(CgroupProbeTest, CoMountedAndMissingHierarchies) {
  Dir("cpu,cpuacct");
  Dir("hugetlb");
  SelfCgroup("3:hugetlb:/\n2:cpu,cpuacct:/\n1:net_cls,net_prio:/\n0::/\n");
  CgroupSupport s = ProbeCgroupSupport(paths_);
  // net_cls,net_prio is listed but not mounted under the root.
  EXPECT_THAT(s.v1_controllers, UnorderedElementsAre("cpu", "cpuacct", "hugetlb"));
  EXPECT_TRUE(s.Has("hugetlb"));
}

TEST_F(CgroupProbeTest, V2FindsSwapBelowTheRoot) {
  File("cgroup.controllers", "cpuset cpu io memory hugetlb pids\n");
  File("system.slice/berthd.service/memory.swap.max", "max");
  SelfCgroup("0::/system.slice/berthd.service\n");
  CgroupSupport s = ProbeCgroupSupport(paths_);
  EXPECT_EQ(s.mode, CgroupMode::kV2);
  EXPECT_TRUE(s.v2());
  EXPECT_TRUE(s.Has("hugetlb"));
  EXPECT_FALSE(s.Has("rdma"));
  EXPECT_TRUE(s.swap);
  EXPECT_FALSE(s.io_weight);
  EXPECT_THAT(s.v1_controllers, IsEmpty());
}

TEST_F(CgroupProbeTest, V2InTheRootCgroupLooksAtItsChildren) {
  File("cgroup.controllers", "cpu io memory\n");
  File("init.scope/io.weight", "default 100");
  SelfCgroup("0::/\n");
  CgroupSupport s = ProbeCgroupSupport(paths_);
  EXPECT_FALSE(s.swap);
  EXPECT_TRUE(s.io_weight);
}

TEST_F(CgroupProbeTest, NothingReadableIsNothingSupported) {
  CgroupSupport s = ProbeCgroupSupport(
      {.cgroup_root = dir_ + "/none", .self_cgroup = dir_ + "/none", .hugepages = dir_ + "/none"});
  EXPECT_EQ(s.mode, CgroupMode::kV1);
  EXPECT_THAT(s.v1_controllers, IsEmpty());
  EXPECT_THAT(s.hugepage_sizes, IsEmpty());
}

TEST_F(CgroupProbeTest, V2ParentNarrowsTheControllers) {
  File("cgroup.controllers", "cpuset cpu io memory hugetlb pids\n");
  File("kubepods/cgroup.controllers", "cpu memory pids\n");
  File("kubepods/cgroup.subtree_control", "memory\n");
  File("kubepods/cgroup.procs", "");
  SelfCgroup("0::/\n");
  const CgroupSupport host = ProbeCgroupSupport(paths_);
  // The pod's cgroup is not there yet: runc creates it and enables what kubepods can have.
  EXPECT_THAT(ForCgroupParent(host, "/kubepods/burstable/pod1").v2_controllers,
              UnorderedElementsAre("cpu", "memory", "pids"));
  EXPECT_EQ(ForCgroupParent(host, "").v2_controllers, host.v2_controllers);
  EXPECT_EQ(ForCgroupParent(host, "/elsewhere").v2_controllers, host.v2_controllers);
  // Processes in kubepods: no more controllers can be enabled below it.
  File("kubepods/cgroup.procs", "1234\n");
  EXPECT_THAT(ForCgroupParent(host, "/kubepods/burstable/pod1").v2_controllers,
              ElementsAre("memory"));
}

TEST_F(CgroupProbeTest, V1ParentChangesNothing) {
  V1Tree();
  const CgroupSupport host = ProbeCgroupSupport(paths_);
  EXPECT_EQ(ForCgroupParent(host, "/kubepods/pod1").v1_controllers, host.v1_controllers);
}

TEST(CgroupParentDirTest, CgroupfsAndSystemdSlices) {
  EXPECT_EQ(CgroupParentDir("/kubepods/burstable/pod1", false), "/kubepods/burstable/pod1");
  EXPECT_EQ(CgroupParentDir("kubepods/pod1/", false), "/kubepods/pod1");
  EXPECT_EQ(CgroupParentDir("", false), "");
  EXPECT_EQ(CgroupParentDir("kubepods-burstable-pod1.slice", true),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice");
  EXPECT_EQ(CgroupParentDir("system.slice", true), "/system.slice");
  EXPECT_EQ(CgroupParentDir("-.slice", true), "");
}

}  // namespace
}  // namespace berth::pod

namespace berth::pod {
namespace {

// The warm-up moves nothing: the process stays in the cgroups it was in. What it gains (the
// runtime's attach not waiting a whole grace period) shows in berth_pod_bench, not here.
TEST(WarmCgroupAttachTest, LeavesTheProcessWhereItWas) {
  const absl::StatusOr<std::string> before = ReadFile("/proc/self/cgroup");
  ASSERT_TRUE(before.ok());
  for (int i = 0; i < 20; ++i) WarmCgroupAttach();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the writes be done
  const absl::StatusOr<std::string> after = ReadFile("/proc/self/cgroup");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *before);
}

// The context switches of this process's thread named `name` (nullopt if there is none).
std::optional<int64_t> SwitchesOf(const std::string& name) {
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    absl::StatusOr<std::string> comm = ReadFile(task.path().string() + "/comm");
    if (!comm.ok() || absl::StripTrailingAsciiWhitespace(*comm) != name) continue;
    absl::StatusOr<std::string> status = ReadFile(task.path().string() + "/status");
    if (!status.ok()) return std::nullopt;
    int64_t total = 0;
    for (absl::string_view line : absl::StrSplit(*status, '\n')) {
      if (!absl::StrContains(line, "ctxt_switches:")) continue;
      int64_t n = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(line.find(':') + 1)), &n)) {
        total += n;
      }
    }
    return total;
  }
  return std::nullopt;
}

// Warm while pods start, then idle: no wake-ups between pod starts (a node's footprint).
TEST(WarmCgroupAttachTest, WritesForAWhileThenSleeps) {
  WarmCgroupAttach();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::optional<int64_t> start = SwitchesOf(kCgroupWarmThreadName);
  if (!start) GTEST_SKIP() << "no cgroup.procs of its own that this process can write";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::optional<int64_t> warm = SwitchesOf(kCgroupWarmThreadName);
  ASSERT_TRUE(warm.has_value());
  EXPECT_GT(*warm, *start) << "no write within half a second of a call";
  // The hold is a second after the last call; well past it, the thread waits for the next.
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  const std::optional<int64_t> idle = SwitchesOf(kCgroupWarmThreadName);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::optional<int64_t> still = SwitchesOf(kCgroupWarmThreadName);
  ASSERT_TRUE(idle.has_value() && still.has_value());
  EXPECT_EQ(*still, *idle) << "woke up with no call";
}

}  // namespace
}  // namespace berth::pod
