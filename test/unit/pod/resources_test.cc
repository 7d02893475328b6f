#include "pod/resources.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pod/sandbox.h"

namespace berth::pod {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::Pair;

// This host's layout: v1 hierarchies, hugetlb only on the cgroup2 mount at /sys/fs/cgroup/unified.
CgroupSupport HybridHost() {
  CgroupSupport host;
  host.mode = CgroupMode::kHybrid;
  host.v1_controllers = {"cpu",     "cpuacct", "cpuset", "memory",      "devices",
                         "freezer", "blkio",   "pids",   "name=systemd"};
  host.v2_controllers = {"hugetlb"};
  host.swap = true;
  host.hugepage_sizes = {"2MB", "1GB"};
  host.cpu_rt = true;
  return host;
}

// A v1 host booted without swap accounting and without the hugetlb hierarchy.
CgroupSupport V1Host() {
  CgroupSupport host = HybridHost();
  host.mode = CgroupMode::kV1;
  host.v2_controllers.clear();
  host.swap = false;
  return host;
}

CgroupSupport V2Host() {
  CgroupSupport host;
  host.mode = CgroupMode::kV2;
  host.v2_controllers = {"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"};
  host.swap = true;
  host.io_weight = true;
  host.hugepage_sizes = {"2MB", "1GB"};
  return host;
}

// A v2 host (or pod cgroup) where only some controllers are enabled, and no swap accounting.
CgroupSupport PartialV2Host() {
  CgroupSupport host = V2Host();
  host.v2_controllers = {"cpu", "memory", "pids"};
  host.swap = false;
  host.io_weight = false;
  return host;
}

// What kubelet v1.28 sends for a burstable container with 100m/500m CPU and a 64Mi limit.
ResourcesSpec KubeletRequest() {
  ResourcesSpec r;
  r.cpu_shares = 102;
  r.cpu_period = 100000;
  r.cpu_quota = 50000;
  r.memory_limit = 64 << 20;
  r.memory_swap_limit = 64 << 20;
  r.oom_score_adj = 1000;
  r.cpuset_cpus = "0";
  r.hugepage_limits = {{"2MB", 0}, {"1GB", 0}};
  r.unified = {{"memory.oom.group", "1"}};
  return r;
}

json Apply(const ResourcesSpec& r, const CgroupSupport& host) {
  return OciResources(r, host, "container test");
}

TEST(OciResourcesTest, V1HostWithoutHugetlbOrSwapAccounting) {
  json res = Apply(KubeletRequest(), V1Host());
  EXPECT_EQ(res["cpu"],
            json({{"shares", 102}, {"period", 100000}, {"quota", 50000}, {"cpus", "0"}}));
  EXPECT_EQ(res["memory"], json({{"limit", 64 << 20}}));  // no memsw files: no swap
  EXPECT_FALSE(res.contains("hugepageLimits"));
  EXPECT_FALSE(res.contains("unified"));  // runc 1.1 refuses it outright on v1
}

TEST(OciResourcesTest, HybridHostHasSwapButNeitherHugetlbNorUnified) {
  json res = Apply(KubeletRequest(), HybridHost());
  EXPECT_EQ(res["memory"], json({{"limit", 64 << 20}, {"swap", 64 << 20}}));
  EXPECT_EQ(res["cpu"]["shares"], 102);
  // hugetlb is a controller of the unified mount only: runc in v1 mode would fail on it.
  EXPECT_FALSE(res.contains("hugepageLimits"));
  EXPECT_FALSE(res.contains("unified"));
}

TEST(OciResourcesTest, V2HostWithSomeControllersDisabled) {
  ResourcesSpec r = KubeletRequest();
  r.unified["memory.swap.max"] = "0";      // kubelet's no-swap on v2, here without accounting
  r.unified["io.weight"] = "default 100";  // no io controller
  r.unified["cpuset.cpus"] = "0";          // no cpuset controller
  r.unified["hugetlb.2MB.max"] = "0";
  r.unified["cgroup.max.descendants"] = "10";  // core files need no controller
  r.unified["pids.max"] = "100";
  r.unified["../escape"] = "1";
  json res = Apply(r, PartialV2Host());
  EXPECT_EQ(res["cpu"], json({{"shares", 102}, {"period", 100000}, {"quota", 50000}}));
  EXPECT_EQ(res["memory"], json({{"limit", 64 << 20}}));
  EXPECT_FALSE(res.contains("hugepageLimits"));
  EXPECT_EQ(
      res["unified"],
      json({{"memory.oom.group", "1"}, {"cgroup.max.descendants", "10"}, {"pids.max", "100"}}));
}

TEST(OciResourcesTest, V2HostWithEverything) {
  ResourcesSpec r = KubeletRequest();
  r.hugepage_limits["16GB"] = 0;  // a size this host does not have
  r.hugepage_limits["2MB"] = 4 << 20;
  r.cpuset_mems = "0";
  r.unified["memory.swap.max"] = "0";
  r.unified["hugetlb.1GB.rsvd.max"] = "0";
  r.unified["hugetlb.16GB.max"] = "0";
  json res = Apply(r, V2Host());
  EXPECT_EQ(
      res["cpu"],
      json({{"shares", 102}, {"period", 100000}, {"quota", 50000}, {"cpus", "0"}, {"mems", "0"}}));
  EXPECT_EQ(res["memory"], json({{"limit", 64 << 20}, {"swap", 64 << 20}}));
  EXPECT_EQ(res["hugepageLimits"], json::parse(R"([{"pageSize": "1GB", "limit": 0},
                                                   {"pageSize": "2MB", "limit": 4194304}])"));
  EXPECT_EQ(
      res["unified"],
      json({{"memory.oom.group", "1"}, {"memory.swap.max", "0"}, {"hugetlb.1GB.rsvd.max", "0"}}));
}

TEST(OciResourcesTest, NothingAskedNothingApplied) {
  EXPECT_EQ(Apply(ResourcesSpec{}, V2Host()), json::object());
  EXPECT_EQ(Apply(ResourcesSpec{}, V1Host()), json::object());
  // The pause container: the lowest shares, only where there is a cpu controller.
  EXPECT_EQ(Apply({.cpu_shares = 2}, HybridHost()), json({{"cpu", {{"shares", 2}}}}));
  EXPECT_EQ(Apply({.cpu_shares = 2}, PartialV2Host()), json({{"cpu", {{"shares", 2}}}}));
  CgroupSupport no_cpu = PartialV2Host();
  no_cpu.v2_controllers.erase("cpu");
  EXPECT_EQ(Apply({.cpu_shares = 2}, no_cpu), json::object());
}

TEST(OciResourcesTest, SwapOnlyWhereRuncTakesIt) {
  ResourcesSpec r;
  r.memory_limit = 64 << 20;
  r.memory_swap_limit = -1;  // unlimited
  EXPECT_EQ(Apply(r, HybridHost())["memory"]["swap"], -1);
  r.memory_swap_limit = 32 << 20;  // memory+swap below the limit
  EXPECT_FALSE(Apply(r, HybridHost())["memory"].contains("swap"));
  r.memory_limit = 0;
  r.memory_swap_limit = 64 << 20;  // swap without a memory limit
  EXPECT_EQ(Apply(r, V2Host()), json::object());
  r.memory_limit = 64 << 20;
  r.memory_swap_limit = 128 << 20;
  EXPECT_EQ(Apply(r, V2Host())["memory"]["swap"], 128 << 20);
}

TEST(OciResourcesTest, CpuSharesStayWithinTheKernelsBounds) {
  EXPECT_EQ(Apply({.cpu_shares = 1}, V1Host())["cpu"]["shares"], 2);
  EXPECT_EQ(Apply({.cpu_shares = 1 << 20}, V2Host())["cpu"]["shares"], 262144);
}

TEST(MergeResourceUpdateTest, CpuManagerUpdatesOnlyTheCpuset) {
  const ResourcesSpec current = KubeletRequest();
  ResourcesSpec update;
  update.cpuset_cpus = "1-2";
  ResourcesSpec merged = MergeResourceUpdate(current, update);
  EXPECT_EQ(merged.cpuset_cpus, "1-2");
  EXPECT_EQ(merged.memory_limit, current.memory_limit);
  EXPECT_EQ(merged.cpu_shares, current.cpu_shares);
  EXPECT_EQ(merged.unified, current.unified);
  update = KubeletRequest();
  update.memory_limit = 96 << 20;
  update.oom_score_adj = 5;  // the process's; runc update does not change it
  update.hugepage_limits = {{"2MB", 2 << 20}};
  merged = MergeResourceUpdate(current, update);
  EXPECT_EQ(merged.memory_limit, 96 << 20);
  EXPECT_EQ(merged.oom_score_adj, 1000);
  EXPECT_THAT(merged.hugepage_limits, ElementsAre(Pair("1GB", 0), Pair("2MB", 2 << 20)));
}

TEST(MergeResourceUpdateTest, AMemoryLimitAloneMovesMemoryPlusSwapWithIt) {
  ResourcesSpec current;
  current.memory_limit = 64 << 20;
  current.memory_swap_limit = 64 << 20;  // kubelet's "no swap" on cgroup v1
  ResourcesSpec update;
  update.memory_limit = 128 << 20;  // crictl update --memory
  ResourcesSpec merged = MergeResourceUpdate(current, update);
  EXPECT_EQ(merged.memory_limit, 128 << 20);
  EXPECT_EQ(merged.memory_swap_limit, 128 << 20);
  EXPECT_EQ(Apply(merged, HybridHost())["memory"]["swap"], 128 << 20);
  update.memory_swap_limit = 256 << 20;  // both given: as given
  EXPECT_EQ(MergeResourceUpdate(current, update).memory_swap_limit, 256 << 20);
  current.memory_swap_limit = -1;  // unlimited stays unlimited
  update.memory_swap_limit = 0;
  EXPECT_EQ(MergeResourceUpdate(current, update).memory_swap_limit, -1);
}

TEST(SandboxResourceAnnotationsTest, ContainerdsKeys) {
  ResourcesSpec pod;
  pod.cpu_period = 100000;
  pod.cpu_quota = 150000;
  pod.cpu_shares = 1536;
  pod.memory_limit = 256 << 20;
  EXPECT_THAT(SandboxResourceAnnotations(pod),
              ElementsAre(Pair("io.kubernetes.cri.sandbox-cpu-period", "100000"),
                          Pair("io.kubernetes.cri.sandbox-cpu-quota", "150000"),
                          Pair("io.kubernetes.cri.sandbox-cpu-shares", "1536"),
                          Pair("io.kubernetes.cri.sandbox-memory", "268435456")));
}

TEST(ResourcesJsonTest, RoundTripAndMissingKeys) {
  const ResourcesSpec r = KubeletRequest();
  const ResourcesSpec back = json(r).get<ResourcesSpec>();
  EXPECT_EQ(json(back), json(r));
  const ResourcesSpec partial = json::parse(R"({"memory_limit": 5})").get<ResourcesSpec>();
  EXPECT_EQ(partial.memory_limit, 5);
  EXPECT_EQ(partial.cpu_shares, 0);
  EXPECT_TRUE(partial.unified.empty());
}

TEST(ResourcesJsonTest, SandboxRecordKeepsPodResourcesAndOverhead) {
  Sandbox s;
  s.id = "p1";
  s.spec.resources = KubeletRequest();
  absl::StatusOr<Sandbox> back = SandboxFromJson(SandboxToJson(s));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->spec.resources.has_value());
  EXPECT_EQ(json(*back->spec.resources), json(KubeletRequest()));
  EXPECT_FALSE(back->spec.overhead.has_value());
}

}  // namespace
}  // namespace berth::pod
