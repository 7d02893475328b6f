#include "pod/pod_files.h"

#include <stdlib.h>

#include <filesystem>

#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

using ::testing::HasSubstr;

class PodFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-podfiles-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Read(const std::string& name) { return ReadFile(dir_ + "/pod/" + name).value(); }
  std::string dir_;
};

TEST_F(PodFilesTest, FromDnsConfig) {
  DnsSettings dns{{"10.96.0.10", "fd00::a"}, {"default.svc.cluster.local", "svc.cluster.local"},
                  {"ndots:5", "timeout:2"}};
  ASSERT_TRUE(WritePodFiles(dir_ + "/pod", "web-0", dns).ok());
  EXPECT_EQ(Read("hostname"), "web-0\n");
  EXPECT_EQ(Read("resolv.conf"),
            "search default.svc.cluster.local svc.cluster.local\n"
            "nameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5 timeout:2\n");
  EXPECT_THAT(Read("hosts"), HasSubstr("127.0.0.1\tlocalhost\n"));
}

TEST_F(PodFilesTest, HostResolvConfWithoutDnsConfig) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/host-resolv", "nameserver 192.0.2.53\n").ok());
  ASSERT_TRUE(WritePodFiles(dir_ + "/pod", "a.b", std::nullopt, dir_ + "/host-resolv").ok());
  EXPECT_EQ(Read("resolv.conf"), "nameserver 192.0.2.53\n");
}

TEST_F(PodFilesTest, BadInputChangesNothing) {
  EXPECT_EQ(WritePodFiles(dir_ + "/pod", "bad host", std::nullopt).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WritePodFiles(dir_ + "/pod", "ok", DnsSettings{{"not-an-ip"}, {}, {}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WritePodFiles(dir_ + "/pod", "ok", DnsSettings{{}, {"a b"}, {}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/pod"));
}

TEST(HostnameTest, PrintableUpTo64Bytes) {
  EXPECT_TRUE(IsValidHostname("web-0"));
  EXPECT_TRUE(IsValidHostname("a.b.c"));
  EXPECT_FALSE(IsValidHostname(""));
  EXPECT_TRUE(IsValidHostname("NamespaceOption-PodSandbox-e15914ad"));
  EXPECT_TRUE(IsValidHostname(std::string(64, 'a')));
  EXPECT_FALSE(IsValidHostname(std::string(65, 'a')));
  EXPECT_FALSE(IsValidHostname("a b"));
  EXPECT_FALSE(IsValidHostname("a\nb"));
}

TEST(HostsTest, PodIpLine) {
  EXPECT_THAT(HostsFile("web-0", "10.88.0.5"), HasSubstr("10.88.0.5\tweb-0\n"));
  EXPECT_THAT(HostsFile("web-0", ""), ::testing::Not(HasSubstr("web-0")));
}

}  // namespace
}  // namespace berth::pod
