// Resources exactly as kubelet v1.28 sends them, through a running berthd with real runc, on
// whatever cgroup layout this host has (v1, hybrid or v2): a pod under a kubelet-style cgroup
// parent, containers with every LinuxContainerResources field kubelet sets, and the limits read
// back from the containers' own cgroup files. One monitor (berth-conmon) is enough here.

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/e2e/busybox_env.h"
#include "test/e2e/pod_cgroup.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/eventually.h"
#include "test/lib/process.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using runtime::v1::RuntimeService;

constexpr char kBridge[] = "berthres0";
constexpr int64_t kMi = 1 << 20;

// The host's huge page sizes, named the way kubelet names them ("2MB", "1GB").
std::vector<std::string> HugepageSizes() {
  std::vector<std::string> sizes;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/kernel/mm/hugepages", ec)) {
    const std::string filename = e.path().filename().string();
    absl::string_view name = filename;
    uint64_t kb = 0;
    if (!absl::ConsumePrefix(&name, "hugepages-") || !absl::ConsumeSuffix(&name, "kB") ||
        !absl::SimpleAtoi(name, &kb)) {
      continue;
    }
    sizes.push_back(kb >= (1 << 20) ? absl::StrCat(kb >> 20, "GB")
                                    : absl::StrCat(kb >> 10, "MB"));
  }
  return sizes;
}

// LinuxContainerResources the way kubelet's generateLinuxContainerResources fills them, with
// both the v1 (swap = limit) and the v2 (memory.oom.group) parts, whatever this host is: berthd
// must leave out what the host cannot enforce.
runtime::v1::LinuxContainerResources KubeletResources(int64_t shares, int64_t quota,
                                                      int64_t memory, int64_t oom_score_adj) {
  runtime::v1::LinuxContainerResources r;
  r.set_cpu_shares(shares);
  r.set_cpu_period(100000);
  r.set_cpu_quota(quota);
  r.set_memory_limit_in_bytes(memory);
  r.set_memory_swap_limit_in_bytes(memory);
  r.set_oom_score_adj(oom_score_adj);
  for (const std::string& size : HugepageSizes()) {
    runtime::v1::HugepageLimit* h = r.add_hugepage_limits();
    h->set_page_size(size);
    h->set_limit(0);
  }
  (*r.mutable_unified())["memory.oom.group"] = "1";
  return r;
}

// The verbose info of a status reply as JSON (null if there is none): never an abort that would
// skip the test's cleanup.
nlohmann::json VerboseInfo(const google::protobuf::Map<std::string, std::string>& info) {
  auto it = info.find("info");
  return it == info.end() ? nlohmann::json() : nlohmann::json::parse(it->second, nullptr, false);
}

std::string ReadTrimmed(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : "<" + path + " unreadable>";
}

// The directory of `pid`'s cgroup for a v1 controller, or its unified cgroup on a v2 host.
std::string CgroupDir(pid_t pid, const std::string& controller) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (CgroupV2() && parts[1].empty()) return kCgroupRoot + parts[2];
    for (absl::string_view c : absl::StrSplit(parts[1], ',')) {
      if (c == controller) return absl::StrCat(kCgroupRoot, "/", controller, parts[2]);
    }
  }
  return "<no " + controller + " cgroup>";
}

std::string CgroupFile(pid_t pid, const std::string& controller, const std::string& file) {
  return ReadTrimmed(CgroupDir(pid, controller) + "/" + file);
}

class ResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = BusyboxEnv::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    absl::StatusOr<BusyboxEnv> env =
        BusyboxEnv::Start({.bridge = kBridge, .subnet = "10.251.8.0/24", .network = "e2e-res"});
    ASSERT_TRUE(env.ok()) << env.status();
    registry_ = std::move(env->registry);
    daemon_ = std::move(env->daemon);
    image_ = env->image;
    cgroup_ = std::make_unique<PodCgroup>(kUid);
    ASSERT_TRUE(cgroup_->Create().ok());
    runtime::v1::RunPodSandboxRequest request;
    *request.mutable_config() = PodConfig();
    absl::StatusOr<runtime::v1::RunPodSandboxResponse> pod =
        cri().Call(&RuntimeService::Stub::RunPodSandbox, request);
    ASSERT_TRUE(pod.ok()) << pod.status() << daemon_->Log();
    pod_ = pod->pod_sandbox_id();
  }

  void TearDown() override {
    if (daemon_ && daemon_->running()) {
      absl::Status removed = cri().RemoveAllPodSandboxes();
      EXPECT_TRUE(removed.ok()) << removed << daemon_->Log();
    }
    daemon_.reset();
    if (cgroup_) {
      EXPECT_TRUE(cgroup_->Remove()) << "a cgroup is left under " << cgroup_->parent();
    }
    BusyboxEnv::RemoveBridge(kBridge);
  }

  CriClient& cri() { return daemon_->client(); }

  // What kubelet sends in RunPodSandbox for a pod of two burstable containers (1.5 CPU, 256Mi)
  // with a RuntimeClass overhead (250m, 120Mi).
  runtime::v1::PodSandboxConfig PodConfig() {
    runtime::v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name("res");
    c.mutable_metadata()->set_namespace_("e2e");
    c.mutable_metadata()->set_uid(kUid);
    c.set_hostname("res");
    c.set_log_directory(daemon_->dir() + "/logs/res");
    runtime::v1::LinuxPodSandboxConfig* linux = c.mutable_linux();
    linux->set_cgroup_parent(cgroup_->parent());
    runtime::v1::LinuxContainerResources* pod = linux->mutable_resources();
    pod->set_cpu_period(100000);
    pod->set_cpu_quota(150000);
    pod->set_cpu_shares(1536);
    pod->set_memory_limit_in_bytes(256 * kMi);
    (*pod->mutable_unified())["memory.oom.group"] = "1";
    runtime::v1::LinuxContainerResources* overhead = linux->mutable_overhead();
    overhead->set_cpu_period(100000);
    overhead->set_cpu_quota(25000);
    overhead->set_cpu_shares(256);
    overhead->set_memory_limit_in_bytes(120 * kMi);
    return c;
  }

  absl::StatusOr<std::string> CreateAndStart(const std::string& name,
                                             const runtime::v1::LinuxContainerResources& r) {
    absl::StatusOr<std::string> id = Create(name, r);
    if (!id.ok()) return id.status();
    if (absl::Status s = Start(*id); !s.ok()) return s;
    return *id;
  }

  absl::Status Start(const std::string& id) {
    runtime::v1::StartContainerRequest start;
    start.set_container_id(id);
    return cri().Call(&RuntimeService::Stub::StartContainer, start).status();
  }

  absl::StatusOr<std::string> Create(const std::string& name,
                                     const runtime::v1::LinuxContainerResources& r) {
    runtime::v1::CreateContainerRequest request;
    request.set_pod_sandbox_id(pod_);
    runtime::v1::ContainerConfig* c = request.mutable_config();
    c->mutable_metadata()->set_name(name);
    c->mutable_image()->set_image(image_);
    c->add_command("sleep");
    c->add_command("1000");
    c->set_log_path(name + ".log");
    *c->mutable_linux()->mutable_resources() = r;
    *request.mutable_sandbox_config() = PodConfig();
    absl::StatusOr<runtime::v1::CreateContainerResponse> created =
        cri().Call(&RuntimeService::Stub::CreateContainer, request);
    if (!created.ok()) return created.status();
    return created->container_id();
  }

  // ContainerStatus and its verbose info (pid, runtimeSpec).
  std::pair<runtime::v1::ContainerStatus, nlohmann::json> Status(const std::string& id) {
    runtime::v1::ContainerStatusRequest r;
    r.set_container_id(id);
    r.set_verbose(true);
    absl::StatusOr<runtime::v1::ContainerStatusResponse> s =
        cri().Call(&RuntimeService::Stub::ContainerStatus, r);
    if (!s.ok()) {
      ADD_FAILURE() << s.status();
      return {};
    }
    return {s->status(), VerboseInfo(s->info())};
  }

  // The memory limit, CPU quota and period, and CPU weight in `pid`'s cgroup, as the v1 or v2
  // files say them ("67108864", "50000 100000", "102").
  std::string MemoryLimit(pid_t pid) {
    return CgroupV2() ? CgroupFile(pid, "memory", "memory.max")
                      : CgroupFile(pid, "memory", "memory.limit_in_bytes");
  }
  std::string CpuMax(pid_t pid) {
    return CgroupV2() ? CgroupFile(pid, "cpu", "cpu.max")
                      : absl::StrCat(CgroupFile(pid, "cpu", "cpu.cfs_quota_us"), " ",
                                     CgroupFile(pid, "cpu", "cpu.cfs_period_us"));
  }
  // cpu.shares on v1; on v2 runc's conversion of shares to cpu.weight.
  std::string CpuWeight(pid_t pid) {
    return CgroupFile(pid, "cpu", CgroupV2() ? "cpu.weight" : "cpu.shares");
  }
  static std::string WeightFor(int64_t shares) {
    return absl::StrCat(CgroupV2() ? 1 + ((shares - 2) * 9999) / 262142 : shares);
  }
  bool SwapAccounting(pid_t pid) {
    return !CgroupV2() && std::filesystem::exists(CgroupDir(pid, "memory") +
                                                  "/memory.memsw.limit_in_bytes");
  }

  static constexpr char kUid[] = "5c1e0a7e-res";
  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<BerthDaemon> daemon_;
  std::unique_ptr<PodCgroup> cgroup_;
  std::string image_;
  std::string pod_;
};

TEST_F(ResourcesTest, PodResourcesAreReportedNotAppliedToThePause) {
  runtime::v1::PodSandboxStatusRequest r;
  r.set_pod_sandbox_id(pod_);
  r.set_verbose(true);
  absl::StatusOr<runtime::v1::PodSandboxStatusResponse> status =
      cri().Call(&RuntimeService::Stub::PodSandboxStatus, r);
  ASSERT_TRUE(status.ok()) << status.status();
  nlohmann::json info = VerboseInfo(status->info());
  nlohmann::json spec = info["runtimeSpec"];
  EXPECT_EQ(spec["linux"]["cgroupsPath"], cgroup_->parent() + "/" + pod_);
  EXPECT_EQ(spec["annotations"]["io.kubernetes.cri.sandbox-cpu-period"], "100000");
  EXPECT_EQ(spec["annotations"]["io.kubernetes.cri.sandbox-cpu-quota"], "150000");
  EXPECT_EQ(spec["annotations"]["io.kubernetes.cri.sandbox-cpu-shares"], "1536");
  EXPECT_EQ(spec["annotations"]["io.kubernetes.cri.sandbox-memory"],
            std::to_string(256 * kMi));
  // The pause: the lowest cpu weight under the pod's cgroup, no limits of its own.
  EXPECT_EQ(spec["linux"]["resources"], nlohmann::json({{"cpu", {{"shares", 2}}}}));
  const pid_t pause = info["pid"].get<int>();
  EXPECT_THAT(CgroupDir(pause, "memory"), HasSubstr(cgroup_->parent() + "/" + pod_));
  EXPECT_EQ(CpuWeight(pause), WeightFor(2));
  int64_t pause_limit = 0;
  EXPECT_TRUE(CgroupV2() ? MemoryLimit(pause) == "max"
                         : absl::SimpleAtoi(MemoryLimit(pause), &pause_limit) &&
                               pause_limit > (int64_t{1} << 50))
      << MemoryLimit(pause);
}

TEST_F(ResourcesTest, KubeletShapedContainersStartAndUpdate) {
  // Burstable (shares 102, 500m, 64Mi, oom_score_adj 1000) and guaranteed (-997: clamped to
  // berthd's own where that is higher).
  absl::StatusOr<std::string> burstable =
      CreateAndStart("burstable", KubeletResources(102, 50000, 64 * kMi, 1000));
  ASSERT_TRUE(burstable.ok()) << burstable.status() << daemon_->Log();
  absl::StatusOr<std::string> guaranteed =
      CreateAndStart("guaranteed", KubeletResources(2, 20000, 32 * kMi, -997));
  ASSERT_TRUE(guaranteed.ok()) << guaranteed.status() << daemon_->Log();

  auto [status, info] = Status(*burstable);
  EXPECT_EQ(status.state(), runtime::v1::CONTAINER_RUNNING);
  const pid_t pid = info["pid"].get<int>();
  EXPECT_THAT(CgroupDir(pid, "memory"), HasSubstr(cgroup_->parent() + "/" + *burstable));
  EXPECT_EQ(MemoryLimit(pid), std::to_string(64 * kMi));
  EXPECT_EQ(CpuMax(pid), "50000 100000");
  EXPECT_EQ(CpuWeight(pid), WeightFor(102));
  if (SwapAccounting(pid)) {
    EXPECT_EQ(CgroupFile(pid, "memory", "memory.memsw.limit_in_bytes"),
              std::to_string(64 * kMi));
  }
  EXPECT_EQ(ReadTrimmed(absl::StrCat("/proc/", pid, "/oom_score_adj")), "1000");
  // ContainerStatus reports what kubelet asked for, not what this host could apply of it.
  const runtime::v1::LinuxContainerResources& reported = status.resources().linux();
  EXPECT_EQ(reported.memory_swap_limit_in_bytes(), 64 * kMi);
  EXPECT_EQ(reported.hugepage_limits_size(), static_cast<int>(HugepageSizes().size()));
  auto oom_group = reported.unified().find("memory.oom.group");
  EXPECT_TRUE(oom_group != reported.unified().end() && oom_group->second == "1");
  if (!CgroupV2()) {
    EXPECT_THAT(daemon_->Log(), HasSubstr("unified not applied"));
    if (!HugepageSizes().empty() && !std::filesystem::exists("/sys/fs/cgroup/hugetlb")) {
      EXPECT_THAT(daemon_->Log(), HasSubstr("hugepage_limits not applied"));
    }
  }

  const pid_t guaranteed_pid = Status(*guaranteed).second["pid"].get<int>();
  int own = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      ReadTrimmed(absl::StrCat("/proc/", daemon_->pid(), "/oom_score_adj")), &own));
  EXPECT_EQ(ReadTrimmed(absl::StrCat("/proc/", guaranteed_pid, "/oom_score_adj")),
            std::to_string(std::max(-997, own)));
  EXPECT_EQ(CpuWeight(guaranteed_pid), WeightFor(2));
  EXPECT_EQ(CpuMax(guaranteed_pid), "20000 100000");

  // kubelet's update has the same shape; here a new memory limit.
  runtime::v1::UpdateContainerResourcesRequest update;
  update.set_container_id(*burstable);
  *update.mutable_linux() = KubeletResources(102, 50000, 96 * kMi, 1000);
  absl::Status updated =
      cri().Call(&RuntimeService::Stub::UpdateContainerResources, update).status();
  ASSERT_TRUE(updated.ok()) << updated << daemon_->Log();
  EXPECT_EQ(MemoryLimit(pid), std::to_string(96 * kMi));
  if (SwapAccounting(pid)) {
    EXPECT_EQ(CgroupFile(pid, "memory", "memory.memsw.limit_in_bytes"),
              std::to_string(96 * kMi));
  }
  EXPECT_EQ(CpuMax(pid), "50000 100000");
  status = Status(*burstable).first;
  EXPECT_EQ(status.state(), runtime::v1::CONTAINER_RUNNING);
  EXPECT_EQ(status.resources().linux().memory_limit_in_bytes(), 96 * kMi);
  EXPECT_EQ(status.resources().linux().memory_swap_limit_in_bytes(), 96 * kMi);
  EXPECT_EQ(status.resources().linux().cpu_shares(), 102);

  // crictl update --memory: the memory limit alone, above the old memory+swap limit.
  runtime::v1::UpdateContainerResourcesRequest memory_only;
  memory_only.set_container_id(*burstable);
  memory_only.mutable_linux()->set_memory_limit_in_bytes(128 * kMi);
  updated = cri().Call(&RuntimeService::Stub::UpdateContainerResources, memory_only).status();
  ASSERT_TRUE(updated.ok()) << updated << daemon_->Log();
  EXPECT_EQ(MemoryLimit(pid), std::to_string(128 * kMi));
  EXPECT_EQ(CpuMax(pid), "50000 100000");  // the rest is kept
  status = Status(*burstable).first;
  EXPECT_EQ(status.resources().linux().memory_limit_in_bytes(), 128 * kMi);
  EXPECT_EQ(status.resources().linux().cpu_shares(), 102);
}

TEST_F(ResourcesTest, AnUpdateOfACreatedContainerHoldsOnceItStarts) {
  // The runtime makes the container at StartContainer: an update before that goes into the
  // spec it is made from.
  absl::StatusOr<std::string> id =
      Create("updated-early", KubeletResources(102, 50000, 64 * kMi, 1000));
  ASSERT_TRUE(id.ok()) << id.status() << daemon_->Log();
  runtime::v1::UpdateContainerResourcesRequest update;
  update.set_container_id(*id);
  *update.mutable_linux() = KubeletResources(204, 30000, 96 * kMi, 1000);
  absl::Status updated =
      cri().Call(&RuntimeService::Stub::UpdateContainerResources, update).status();
  ASSERT_TRUE(updated.ok()) << updated << daemon_->Log();
  auto [created, created_info] = Status(*id);
  EXPECT_EQ(created.state(), runtime::v1::CONTAINER_CREATED);
  EXPECT_EQ(created.resources().linux().memory_limit_in_bytes(), 96 * kMi);
  EXPECT_EQ(created_info["runtimeSpec"]["linux"]["resources"]["memory"]["limit"], 96 * kMi);

  ASSERT_TRUE(Start(*id).ok()) << daemon_->Log();
  const pid_t pid = Status(*id).second["pid"].get<int>();
  ASSERT_GT(pid, 0);
  EXPECT_EQ(MemoryLimit(pid), std::to_string(96 * kMi));
  EXPECT_EQ(CpuMax(pid), "30000 100000");
  EXPECT_EQ(CpuWeight(pid), WeightFor(204));
  // The rest of the spec is as it was made: the command runs.
  EXPECT_EQ(Status(*id).first.state(), runtime::v1::CONTAINER_RUNNING);
}

}  // namespace
}  // namespace berth::testing
