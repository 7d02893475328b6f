// AppArmor on a host that has it, with a fake /sys and parser (this machine's kernel has no
// AppArmor), and the default profile checked by Debian's real apparmor_parser where installed.

#include "pod/apparmor.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

using ::testing::HasSubstr;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class AppArmorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-apparmor-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(MakeDirs(dir_ + "/sys/module/apparmor/parameters").ok());
    ASSERT_TRUE(MakeDirs(dir_ + "/sys/kernel/security/apparmor").ok());
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/sys/kernel/security/apparmor/profiles",
                                "docker-default (enforce)\n")
                    .ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Enable(const std::string& value) {
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/sys/module/apparmor/parameters/enabled", value + "\n").ok());
  }
  // A parser that logs its arguments and "loads" what it is given, or fails.
  void FakeParser(bool fails) {
    ASSERT_TRUE(WriteFileAtomic(
                    dir_ + "/parser",
                    absl::StrCat("#!/bin/sh\necho \"$@\" >> ", dir_, "/calls\n",
                                 fails ? "echo 'syntax error, line 3' >&2; exit 1\n"
                                       : absl::StrCat("echo 'berth-default (enforce)' >> ", dir_,
                                                      "/sys/kernel/security/apparmor/profiles\n")),
                    0755)
                    .ok());
  }
  AppArmor Make() {
    return AppArmor({.sys = dir_ + "/sys", .parser = dir_ + "/parser", .profile_dir = dir_ + "/p"});
  }

  std::string dir_;
};

TEST_F(AppArmorTest, DisabledHostsHaveNoProfile) {
  FakeParser(false);
  Enable("N");
  AppArmor apparmor = Make();
  EXPECT_FALSE(apparmor.enabled());
  EXPECT_TRUE(absl::IsUnavailable(apparmor.DefaultProfile().status()));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/calls"));
}

TEST_F(AppArmorTest, TheDefaultProfileIsLoadedOnce) {
  FakeParser(false);
  Enable("Y");
  AppArmor apparmor = Make();
  ASSERT_TRUE(apparmor.enabled());
  absl::StatusOr<std::string> name = apparmor.DefaultProfile();
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, "berth-default");
  EXPECT_TRUE(apparmor.DefaultProfile().ok());
  EXPECT_EQ(Read(dir_ + "/calls"), absl::StrCat("-Kr ", dir_, "/p/berth-default\n"));
  EXPECT_EQ(Read(dir_ + "/p/berth-default"), AppArmorDefaultProfileText("berth-default"));
  // A later berthd finds it in the kernel and does not load it again.
  AppArmor again = Make();
  EXPECT_TRUE(again.DefaultProfile().ok());
  EXPECT_EQ(Read(dir_ + "/calls"), absl::StrCat("-Kr ", dir_, "/p/berth-default\n"));
}

TEST_F(AppArmorTest, AParserFailureIsClearAndRetried) {
  FakeParser(true);
  Enable("Y");
  AppArmor apparmor = Make();
  absl::Status s = apparmor.DefaultProfile().status();
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("syntax error, line 3"));
  FakeParser(false);
  EXPECT_TRUE(apparmor.DefaultProfile().ok());
}

// The profile compiles with the real parser (-Q: everything but loading into the kernel).
TEST(AppArmorProfileTest, DebiansParserCompilesIt) {
  const std::string parser = "/usr/sbin/apparmor_parser";
  if (::access(parser.c_str(), X_OK) != 0) GTEST_SKIP() << "apparmor is not installed";
  char tmpl[] = "/tmp/berth-apparmor-profile.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string file = std::string(tmpl) + "/berth-default";
  ASSERT_TRUE(WriteFileAtomic(file, AppArmorDefaultProfileText("berth-default")).ok());
  absl::StatusOr<ProcessResult> r =
      RunProcess({.argv = {parser, "-QK", "--base", "/etc/apparmor.d", file},
                  .env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
                  .timeout = std::chrono::seconds(60)});
  std::filesystem::remove_all(tmpl);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data << r->stdout_data;
}

}  // namespace
}  // namespace berth::pod
