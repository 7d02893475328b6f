#include "pod/container_spec.h"

#include <unistd.h>

#include <filesystem>

#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pod/cri_log.h"
#include "pod/seccomp.h"
#include "pod/user.h"

namespace berth::pod {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;

class ContainerSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-spec-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    rootfs_ = tmpl;
    ASSERT_TRUE(MakeDirs(rootfs_ + "/etc").ok());
    ASSERT_TRUE(WriteFileAtomic(rootfs_ + "/etc/passwd",
                                "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
                    .ok());
    ASSERT_TRUE(WriteFileAtomic(rootfs_ + "/etc/group",
                                "root:x:0:\napp:x:1001:\nvideo:x:44:app,other\naudio:x:29:other\n")
                    .ok());
    sandbox_.id = "sandbox1";
    sandbox_.spec.name = "pod";
    sandbox_.spec.namespace_name = "ns";
    sandbox_.spec.uid = "uid";
    sandbox_.spec.hostname = "pod-host";
    sandbox_.netns_path = "/run/berth/netns/sandbox1";
    container_.id = "c1";
    container_.spec.name = "app";
    image_.entrypoint = {"/entry"};
    image_.cmd = {"default-arg"};
    image_.env = {"PATH=/image/bin", "FROM_IMAGE=1"};
    image_.working_dir = "/work";
  }
  void TearDown() override { std::filesystem::remove_all(rootfs_); }

  absl::StatusOr<json> Spec() {
    ContainerSpecInput in{.container = &container_,
                          .sandbox = &sandbox_,
                          .image = &image_,
                          .rootfs = rootfs_,
                          .pod_dir = rootfs_ + "/pod",
                          .sandbox_pid = 42,
                          .cgroups = cgroups_,
                          .apparmor_default = apparmor_default_};
    absl::StatusOr<std::string> text = ContainerOciSpec(in);
    if (!text.ok()) return text.status();
    return json::parse(*text);
  }

  std::string rootfs_;
  CgroupSupport cgroups_{.v1_controllers = {"cpu", "cpuacct", "memory"}};
  std::string apparmor_default_;
  Sandbox sandbox_;
  Container container_;
  image::ImageConfig image_;
};

TEST_F(ContainerSpecTest, CommandAndArgsFollowKubernetesRules) {
  EXPECT_EQ((*Spec())["process"]["args"], json({"/entry", "default-arg"}));
  container_.spec.args = {"a"};
  EXPECT_EQ((*Spec())["process"]["args"], json({"/entry", "a"}));
  container_.spec.command = {"/cmd"};
  container_.spec.args = {};
  EXPECT_EQ((*Spec())["process"]["args"], json({"/cmd"}));  // the image's CMD is dropped
  container_.spec.args = {"x", "y"};
  EXPECT_EQ((*Spec())["process"]["args"], json({"/cmd", "x", "y"}));
  image_.entrypoint.clear();
  image_.cmd.clear();
  container_.spec.command.clear();
  container_.spec.args.clear();
  EXPECT_TRUE(absl::IsInvalidArgument(Spec().status()));
}

TEST_F(ContainerSpecTest, EnvWorkingDirAndNamespaces) {
  container_.spec.envs = {{"FROM_IMAGE", "2"}, {"MINE", "x"}};
  absl::StatusOr<json> spec = Spec();
  ASSERT_TRUE(spec.ok()) << spec.status();
  const json& env = (*spec)["process"]["env"];
  EXPECT_THAT(env, Contains("PATH=/image/bin"));
  EXPECT_THAT(env, Contains("FROM_IMAGE=2"));
  EXPECT_THAT(env, Contains("MINE=x"));
  EXPECT_THAT(env, Contains("HOSTNAME=pod-host"));
  EXPECT_EQ((*spec)["process"]["cwd"], "/work");
  EXPECT_EQ((*spec)["hostname"], "pod-host");
  const json& ns = (*spec)["linux"]["namespaces"];
  EXPECT_THAT(ns, Contains(json({{"type", "network"}, {"path", "/run/berth/netns/sandbox1"}})));
  EXPECT_THAT(ns, Contains(json({{"type", "ipc"}, {"path", "/proc/42/ns/ipc"}})));
  EXPECT_THAT(ns, Contains(json({{"type", "pid"}, {"path", "/proc/42/ns/pid"}})));
  EXPECT_EQ((*spec)["annotations"]["io.kubernetes.cri.sandbox-id"], "sandbox1");
  container_.spec.security.pid_mode = NamespaceMode::kContainer;
  EXPECT_THAT((*Spec())["linux"]["namespaces"], Contains(json({{"type", "pid"}})));
  container_.spec.security.pid_mode = NamespaceMode::kTarget;
  EXPECT_TRUE(absl::IsInvalidArgument(Spec().status()));  // the target is not running
}

TEST_F(ContainerSpecTest, Capabilities) {
  absl::StatusOr<json> spec = Spec();
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ((*spec)["process"]["capabilities"]["bounding"], json(DefaultCapabilities()));
  container_.spec.security.drop_capabilities = {"ALL"};
  container_.spec.security.add_capabilities = {"net_admin", "CAP_SYS_TIME"};
  EXPECT_EQ((*Spec())["process"]["capabilities"]["effective"],
            json({"CAP_NET_ADMIN", "CAP_SYS_TIME"}));
  container_.spec.security.add_capabilities = {"NOT_A_CAP"};
  EXPECT_TRUE(absl::IsInvalidArgument(Spec().status()));
  container_.spec.security.add_capabilities = {};
  container_.spec.security.privileged = true;
  spec = Spec();
  // All the node lets berthd hand out (all 41 where nothing restricts it).
  EXPECT_GE((*spec)["process"]["capabilities"]["bounding"].size(), 14u);
  EXPECT_FALSE((*spec)["linux"].contains("maskedPaths"));
}

TEST_F(ContainerSpecTest, SeccompAndMountsAndResources) {
  container_.spec.security.seccomp = "runtime/default";
  container_.spec.mounts = {{.container_path = "/data/sub", .host_path = rootfs_ + "/h2"},
                            {.container_path = "/data", .host_path = rootfs_ + "/h1",
                             .readonly = true}};
  container_.spec.resources.memory_limit = 64 << 20;
  container_.spec.resources.cpu_shares = 512;
  absl::StatusOr<json> spec = Spec();
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_EQ((*spec)["linux"]["resources"]["memory"]["limit"], 64 << 20);
  EXPECT_EQ((*spec)["linux"]["resources"]["cpu"]["shares"], 512);
  std::vector<std::string> destinations;
  for (const json& m : (*spec)["mounts"]) destinations.push_back(m["destination"]);
  // Parents before children, whatever order kubelet sent them in.
  auto data = std::find(destinations.begin(), destinations.end(), "/data");
  auto sub = std::find(destinations.begin(), destinations.end(), "/data/sub");
  ASSERT_NE(data, destinations.end());
  EXPECT_LT(data, sub);
  EXPECT_TRUE(std::filesystem::is_directory(rootfs_ + "/h1"));  // created like the others do
  container_.spec.mounts = {{.container_path = "relative", .host_path = "/tmp"}};
  EXPECT_TRUE(absl::IsInvalidArgument(Spec().status()));
  container_.spec.mounts.clear();
  // What a cgroup v1 host cannot enforce is left out rather than failing the create.
  container_.spec.resources.unified = {{"memory.high", "1000000"}};
  container_.spec.resources.hugepage_limits = {{"2MB", 0}};
  spec = Spec();
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE((*spec)["linux"]["resources"].contains("unified"));
  EXPECT_FALSE((*spec)["linux"]["resources"].contains("hugepageLimits"));
  EXPECT_EQ((*spec)["linux"]["resources"]["memory"]["limit"], 64 << 20);
  EXPECT_THAT((*spec)["linux"]["namespaces"], Not(Contains(json({{"type", "cgroup"}}))));
  cgroups_ = {.mode = CgroupMode::kV2, .v2_controllers = {"memory"}};
  spec = Spec();
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["linux"]["resources"]["unified"]["memory.high"], "1000000");
  EXPECT_FALSE((*spec)["linux"]["resources"].contains("cpu"));  // no cpu controller
  EXPECT_THAT((*spec)["linux"]["namespaces"], Contains(json({{"type", "cgroup"}})));
}

TEST_F(ContainerSpecTest, UsersResolveInTheImage) {
  absl::StatusOr<ResolvedUser> u = ResolveUser(rootfs_, std::nullopt, "app", std::nullopt, "",
                                               {5000}, false);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1001u);
  EXPECT_THAT(u->additional_gids, ElementsAre(1001, 44, 5000));
  u = ResolveUser(rootfs_, std::nullopt, "app", std::nullopt, "", {5000}, /*strict=*/true);
  EXPECT_THAT(u->additional_gids, ElementsAre(1001, 5000));
  u = ResolveUser(rootfs_, std::nullopt, "", std::nullopt, "app:audio", {}, false);
  EXPECT_EQ(u->gid, 29u);
  u = ResolveUser(rootfs_, 4242, "", 7, "app", {}, false);
  EXPECT_EQ(u->uid, 4242u);
  EXPECT_EQ(u->gid, 7u);
  EXPECT_TRUE(absl::IsInvalidArgument(
      ResolveUser(rootfs_, std::nullopt, "ghost", std::nullopt, "", {}, false).status()));
  // A symlinked /etc/passwd is not followed out of the root filesystem.
  std::filesystem::remove(rootfs_ + "/etc/passwd");
  std::filesystem::create_symlink("/etc/passwd", rootfs_ + "/etc/passwd");
  EXPECT_TRUE(absl::IsInvalidArgument(
      ResolveUser(rootfs_, std::nullopt, "root", std::nullopt, "", {}, false).status()));
}

TEST(ExecProcessSpecTest, KeepsTheContainersUserAndReplacesArgs) {
  const std::string spec = R"({"process": {"args": ["sleep"], "user": {"uid": 7},
                              "terminal": true, "oomScoreAdj": 5}})";
  absl::StatusOr<std::string> p = ExecProcessSpec(spec, {"ls", "-l"}, false);
  ASSERT_TRUE(p.ok());
  json j = json::parse(*p);
  EXPECT_EQ(j["args"], json({"ls", "-l"}));
  EXPECT_EQ(j["user"]["uid"], 7);
  EXPECT_EQ(j["terminal"], false);
  EXPECT_FALSE(j.contains("oomScoreAdj"));
}

TEST(CriLogTest, ReassemblesStreamsAndCaps) {
  const std::string log =
      "2026-01-01T00:00:00.000000000Z stdout P hel\n"
      "2026-01-01T00:00:00.000000000Z stdout F lo\n"
      "2026-01-01T00:00:00.000000000Z stderr F oops\n"
      "garbage\n"
      "2026-01-01T00:00:00.000000000+01:00 stdout P tail";
  CriLogStreams s = ParseCriLog(log, 100);
  EXPECT_EQ(s.stdout_data, "hello\ntail");
  EXPECT_EQ(s.stderr_data, "oops\n");
  EXPECT_FALSE(s.truncated);
  s = ParseCriLog(log, 3);
  EXPECT_EQ(s.stdout_data, "hel");
  EXPECT_TRUE(s.truncated);
}

TEST_F(ContainerSpecTest, AppArmorRuntimeDefaultWhereTheHostHasIt) {
  // No AppArmor on the host: nothing is set, whatever is asked.
  EXPECT_FALSE((*Spec())["process"].contains("apparmorProfile"));
  container_.spec.security.apparmor = "runtime/default";
  EXPECT_FALSE((*Spec())["process"].contains("apparmorProfile"));
  // With it: RuntimeDefault and nothing both confine, unconfined and privileged do not.
  apparmor_default_ = "berth-default";
  EXPECT_EQ((*Spec())["process"]["apparmorProfile"], "berth-default");
  container_.spec.security.apparmor = "";
  EXPECT_EQ((*Spec())["process"]["apparmorProfile"], "berth-default");
  container_.spec.security.apparmor = "unconfined";
  EXPECT_FALSE((*Spec())["process"].contains("apparmorProfile"));
  container_.spec.security.apparmor = "runtime/default";
  container_.spec.security.privileged = true;
  EXPECT_FALSE((*Spec())["process"].contains("apparmorProfile"));
  // Exec processes inherit the container's.
  container_.spec.security.privileged = false;
  absl::StatusOr<json> spec = Spec();
  ASSERT_TRUE(spec.ok());
  absl::StatusOr<std::string> exec = ExecProcessSpec(spec->dump(), {"ls"}, false);
  ASSERT_TRUE(exec.ok());
  EXPECT_EQ(json::parse(*exec)["apparmorProfile"], "berth-default");
}

TEST(SeccompTest, LocalhostProfilesAreConverted) {
  char tmpl[] = "/tmp/berth-seccomp-test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ASSERT_TRUE(WriteFileAtomic(dir + "/p.json", R"({"defaultAction": "SCMP_ACT_ALLOW",
      "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
      "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": null}]})").ok());
  absl::StatusOr<std::string> p = LocalhostSeccomp(dir + "/p.json");
  ASSERT_TRUE(p.ok()) << p.status();
  json j = json::parse(*p);
  EXPECT_EQ(j["architectures"], json({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"}));
  EXPECT_EQ(j["syscalls"][0]["names"], json({"mkdir"}));
  EXPECT_FALSE(j["syscalls"][0].contains("args"));
  ASSERT_TRUE(WriteFileAtomic(dir + "/bad.json", "{}").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(LocalhostSeccomp(dir + "/bad.json").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(LocalhostSeccomp(dir + "/missing.json").status()));
  std::filesystem::remove_all(dir);
  EXPECT_THAT(RuntimeDefaultSeccomp({}), Not(HasSubstr("\"mount\"")));
  EXPECT_THAT(RuntimeDefaultSeccomp({"CAP_SYS_ADMIN"}), HasSubstr("\"mount\""));
}

// Rules with arguments, as moby's default profile has them: clone only without namespace flags
// unless CAP_SYS_ADMIN, personality only to the usual personas.
TEST(SeccompTest, RuntimeDefaultFiltersCloneFlagsAndPersonalities) {
  auto rules_for = [](const json& profile, const std::string& name) {
    std::vector<json> rules;
    for (const json& rule : profile["syscalls"]) {
      for (const json& n : rule["names"]) {
        if (n == name) rules.push_back(rule);
      }
    }
    return rules;
  };
  const json plain = json::parse(RuntimeDefaultSeccomp({"CAP_CHOWN"}));
  std::vector<json> clone = rules_for(plain, "clone");
  ASSERT_EQ(clone.size(), 1u);
  EXPECT_EQ(clone[0]["action"], "SCMP_ACT_ALLOW");
  ASSERT_EQ(clone[0]["args"].size(), 1u);
  EXPECT_EQ(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
  EXPECT_EQ(clone[0]["args"][0]["value"], 0x7E020000u);
  EXPECT_EQ(clone[0]["args"][0]["valueTwo"], 0u);
  std::vector<json> clone3 = rules_for(plain, "clone3");
  ASSERT_EQ(clone3.size(), 1u);
  EXPECT_EQ(clone3[0]["errnoRet"], 38);
  EXPECT_TRUE(rules_for(plain, "unshare").empty());
  EXPECT_TRUE(rules_for(plain, "setns").empty());
  std::vector<json> personality = rules_for(plain, "personality");
  ASSERT_EQ(personality.size(), 5u);
  for (const json& rule : personality) {
    ASSERT_EQ(rule["args"].size(), 1u);
    EXPECT_EQ(rule["args"][0]["op"], "SCMP_CMP_EQ");
  }

  const json admin = json::parse(RuntimeDefaultSeccomp({"CAP_SYS_ADMIN"}));
  clone = rules_for(admin, "clone");
  ASSERT_EQ(clone.size(), 1u);
  EXPECT_FALSE(clone[0].contains("args"));
  ASSERT_EQ(rules_for(admin, "clone3").size(), 1u);
  EXPECT_EQ(rules_for(admin, "clone3")[0]["action"], "SCMP_ACT_ALLOW");
  EXPECT_EQ(rules_for(admin, "unshare").size(), 1u);
  EXPECT_EQ(rules_for(admin, "setns").size(), 1u);
}

}  // namespace
}  // namespace berth::pod
