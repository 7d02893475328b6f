#include "cni/conf.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace berth::cni {
namespace {

using ::testing::HasSubstr;

constexpr char kBridgeList[] = R"({
  "cniVersion": "1.0.0", "name": "net-a",
  "plugins": [{"type": "bridge", "bridge": "t0", "ipam": {"type": "host-local"}},
              {"type": "portmap", "capabilities": {"portMappings": true}}]})";

class ConfTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-cni-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    conf_dir_ = dir_ + "/net.d";
    bin_dir_ = dir_ + "/bin";
    ASSERT_TRUE(MakeDirs(conf_dir_).ok());
    ASSERT_TRUE(MakeDirs(bin_dir_).ok());
    for (const char* plugin : {"bridge", "portmap", "loopback"}) {
      ASSERT_TRUE(WriteFileAtomic(bin_dir_ + "/" + plugin, "#!/bin/sh\n", 0755).ok());
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& name, const std::string& content) {
    ASSERT_TRUE(WriteFileAtomic(conf_dir_ + "/" + name, content).ok());
  }
  absl::StatusOr<NetworkConf> Find(const std::string& name = "") {
    return FindDefaultNetwork(conf_dir_, {"/nonexistent", bin_dir_}, name);
  }

  std::string dir_, conf_dir_, bin_dir_;
};

TEST_F(ConfTest, LoadsConflist) {
  Write("10-a.conflist", kBridgeList);
  auto conf = Find();
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_EQ(conf->name, "net-a");
  EXPECT_EQ(conf->cni_version, "1.0.0");
  EXPECT_EQ(conf->plugin_types, (std::vector<std::string>{"bridge", "portmap"}));
  EXPECT_EQ(conf->path, conf_dir_ + "/10-a.conflist");
}

TEST_F(ConfTest, SinglePluginConfBecomesAListOfOne) {
  Write("99-lo.conf", R"({"cniVersion": "0.3.1", "name": "lo", "type": "loopback"})");
  auto conf = Find();
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_EQ(conf->plugin_types, std::vector<std::string>{"loopback"});
  auto list = nlohmann::json::parse(conf->list_json);
  EXPECT_EQ(list["plugins"][0]["type"], "loopback");
  EXPECT_EQ(list["name"], "lo");
}

TEST_F(ConfTest, FirstValidInLexicalOrderWins) {
  Write("20-b.conflist", std::string(kBridgeList));
  Write("05-broken.conflist", "{ not json");
  Write("10-missing-plugin.conflist",
        R"({"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "nosuchplugin"}]})");
  Write("00-ignored.txt", "whatever");
  auto conf = Find();
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_EQ(conf->path, conf_dir_ + "/20-b.conflist");
}

TEST_F(ConfTest, DefaultNetworkByName) {
  Write("10-a.conflist", kBridgeList);
  Write("20-b.conf", R"({"cniVersion": "0.4.0", "name": "lo", "type": "loopback"})");
  auto conf = Find("lo");
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_EQ(conf->name, "lo");
  auto missing = Find("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("\"nope\" not found"));
}

TEST_F(ConfTest, NoValidConfigSaysWhy) {
  Write("10-bad.conflist", R"({"cniVersion": "9.9.9", "name": "x", "plugins": [{"type": "bridge"}]})");
  auto conf = Find();
  ASSERT_FALSE(conf.ok());
  EXPECT_EQ(conf.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(conf.status().message()), HasSubstr("unsupported cniVersion \"9.9.9\""));
}

TEST_F(ConfTest, EmptyOrMissingDir) {
  EXPECT_EQ(Find().status().code(), absl::StatusCode::kFailedPrecondition);
  auto missing = FindDefaultNetwork(dir_ + "/none", {bin_dir_}, "");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ConfTest, RejectsMalformedConfigs) {
  const std::pair<const char*, const char*> kCases[] = {
      {R"([1,2])", "not a JSON object"},
      {R"({"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]})", "no \"name\""},
      {R"({"cniVersion": "1.0.0", "name": "x", "plugins": []})", "non-empty list"},
      {R"({"cniVersion": "1.0.0", "name": "x", "plugins": [{"bridge": "b"}]})", "no valid \"type\""},
      {R"({"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "../evil"}]})",
       "no valid \"type\""},
  };
  for (const auto& [json, want] : kCases) {
    Write("x.conflist", json);
    auto conf = LoadNetworkConf(conf_dir_ + "/x.conflist");
    ASSERT_FALSE(conf.ok()) << json;
    EXPECT_EQ(conf.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(conf.status().message()), HasSubstr(want)) << json;
  }
}

}  // namespace
}  // namespace berth::cni
