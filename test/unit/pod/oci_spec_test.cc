#include "pod/oci_spec.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace berth::pod {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

std::vector<std::string> NamespaceTypes(const json& spec) {
  std::vector<std::string> types;
  for (const json& ns : spec["linux"]["namespaces"]) types.push_back(ns["type"]);
  return types;
}

TEST(PauseSpecTest, OwnNamespacesAndThePodNetwork) {
  absl::StatusOr<std::string> text = PauseSpec({.rootfs = "/run/berth/pause",
                                                .hostname = "web-0",
                                                .netns_path = "/run/berth/netns/abc",
                                                .shm_path = "/run/berth/pods/abc/shm",
                                                .cgroups_path = "/kubepods/podx/abc",
                                                .cgroups = {.v1_controllers = {"cpu"}},
                                                .oom_score_adj = -998,
                                                .sysctls = {{"net.ipv4.ip_forward", "1"}}});
  ASSERT_TRUE(text.ok()) << text.status();
  json spec = json::parse(*text);
  EXPECT_THAT(NamespaceTypes(spec), ::testing::ElementsAre("mount", "pid", "ipc", "uts", "network"));
  EXPECT_EQ(spec["linux"]["namespaces"][4]["path"], "/run/berth/netns/abc");
  EXPECT_EQ(spec["hostname"], "web-0");
  EXPECT_EQ(spec["root"]["readonly"], true);
  EXPECT_EQ(spec["process"]["user"]["uid"], 65535);
  EXPECT_EQ(spec["process"]["noNewPrivileges"], true);
  EXPECT_TRUE(spec["process"]["capabilities"]["bounding"].empty());
  EXPECT_EQ(spec["process"]["oomScoreAdj"], -998);
  EXPECT_EQ(spec["linux"]["cgroupsPath"], "/kubepods/podx/abc");
  // The lowest cpu shares and no limits: the pod's are on kubelet's pod cgroup.
  EXPECT_EQ(spec["linux"]["resources"], json({{"cpu", {{"shares", 2}}}}));
  EXPECT_EQ(spec["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
  EXPECT_THAT(text->find("/dev/shm"), ::testing::Ne(std::string::npos));
  EXPECT_FALSE(spec["linux"]["maskedPaths"].empty());
}

TEST(PauseSpecTest, HostNamespaces) {
  absl::StatusOr<std::string> text =
      PauseSpec({.rootfs = "/p", .hostname = "node", .host_ipc = true, .host_pid = true,
                 .host_uts = true});
  ASSERT_TRUE(text.ok());
  json spec = json::parse(*text);
  EXPECT_THAT(NamespaceTypes(spec), ::testing::ElementsAre("mount"));
  EXPECT_FALSE(spec.contains("hostname"));
}

TEST(PauseSpecTest, OnlyNamespacedSysctls) {
  EXPECT_THAT(std::string(PauseSpec({.rootfs = "/p", .sysctls = {{"kernel.hostname", "x"}}})
                              .status()
                              .message()),
              HasSubstr("kernel.hostname"));
  // The pod shares the host's network: net.* would change the node.
  EXPECT_FALSE(PauseSpec({.rootfs = "/p", .sysctls = {{"net.ipv4.ip_forward", "1"}}}).ok());
  EXPECT_TRUE(IsNamespacedSysctl("kernel.shmmax", false, true));
  EXPECT_FALSE(IsNamespacedSysctl("kernel.shmmax", true, false));
  EXPECT_TRUE(IsNamespacedSysctl("fs.mqueue.msg_max", false, false));
  EXPECT_FALSE(IsNamespacedSysctl("vm.swappiness", false, false));
}

TEST(OomScoreAdjTest, ClampedToOurOwn) {
  char path[] = "/tmp/berth-oom-test.XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << "-500\n";
  EXPECT_EQ(ClampOomScoreAdj(-998, path), -500);
  EXPECT_EQ(ClampOomScoreAdj(100, path), 100);
  unlink(path);
  EXPECT_EQ(ClampOomScoreAdj(-998, path), -998);  // unknown: as asked
}

}  // namespace
}  // namespace berth::pod
