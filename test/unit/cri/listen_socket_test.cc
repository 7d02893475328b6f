#include "cri/listen_socket.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>
#include <filesystem>

#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::cri {
namespace {

using ::testing::HasSubstr;

class ListenSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-sock-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/sub/berth.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A bound unix socket at path_; listening if `listen`, else closed at once (a stale file).
  UniqueFd Bind(bool listen) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    if (listen) {
      EXPECT_EQ(::listen(fd.get(), 1), 0);
    } else {
      fd.Reset();
    }
    return fd;
  }

  std::string dir_, path_;
};

TEST_F(ListenSocketTest, SecondClaimIsRefusedWithTheHolder) {
  auto first = ListenSocket::Claim(path_);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = ListenSocket::Claim(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("already serving " + path_));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(std::to_string(::getpid())));
}

TEST_F(ListenSocketTest, StaleSocketIsRemovedAndOwnSocketRemovedOnDestruction) {
  ASSERT_TRUE(MakeDirs(DirName(path_)).ok());
  Bind(/*listen=*/false);
  ASSERT_TRUE(std::filesystem::exists(path_));
  {
    auto claim = ListenSocket::Claim(path_);
    ASSERT_TRUE(claim.ok()) << claim.status();
    EXPECT_FALSE(std::filesystem::exists(path_));
    Bind(/*listen=*/false);  // stands in for the server's socket
    ASSERT_TRUE(claim->Secure().ok());
    struct stat st;
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
  }
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(ListenSocketTest, LiveListenerIsNotTakenOver) {
  ASSERT_TRUE(MakeDirs(DirName(path_)).ok());
  UniqueFd listener = Bind(/*listen=*/true);
  auto claim = ListenSocket::Claim(path_);
  ASSERT_FALSE(claim.ok());
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST_F(ListenSocketTest, NonSocketFileIsLeftAlone) {
  ASSERT_TRUE(MakeDirs(DirName(path_)).ok());
  ASSERT_TRUE(WriteFileAtomic(path_, "data").ok());
  auto claim = ListenSocket::Claim(path_);
  ASSERT_FALSE(claim.ok());
  EXPECT_THAT(std::string(claim.status().message()), HasSubstr("not a socket"));
  EXPECT_EQ(*ReadFile(path_), "data");
}

}  // namespace
}  // namespace berth::cri
