#include "base/file_util.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace berth {
namespace {

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-base-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // `path` has `mode` and is the only file in dir_: no temporary was left beside it.
  void ExpectOnlyFileWithMode(const std::string& path, mode_t mode) {
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, mode);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_),
                            std::filesystem::directory_iterator()),
              1);
  }
  std::string dir_;
};

TEST_F(FileUtilTest, WriteFileAtomicWritesContentAndModeAndLeavesNoTemp) {
  std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteFileAtomic(path, "one", 0600).ok());
  ASSERT_TRUE(WriteFileAtomic(path, "two", 0640).ok());
  EXPECT_EQ(*ReadFile(path), "two");
  ExpectOnlyFileWithMode(path, 0640);
}

// Volatile writes skip only the fsyncs: still atomic, same mode, no temporary left.
TEST_F(FileUtilTest, AVolatileWriteIsStillAtomicAndComplete) {
  std::string path = dir_ + "/v";
  ASSERT_TRUE(WriteFileAtomic(path, "one", 0600, Durability::kVolatile).ok());
  ASSERT_TRUE(WriteFileAtomic(path, std::string(1 << 20, 'x'), 0644, Durability::kVolatile).ok());
  EXPECT_EQ(*ReadFile(path), std::string(1 << 20, 'x'));
  ExpectOnlyFileWithMode(path, 0644);
  EXPECT_FALSE(WriteFileAtomic(dir_ + "/missing/v", "x", 0644, Durability::kVolatile).ok());
}

TEST_F(FileUtilTest, WriteFileAtomicIntoMissingDirFailsWithPath) {
  absl::Status status = WriteFileAtomic(dir_ + "/missing/f", "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find(dir_ + "/missing/f"), std::string::npos);
}

TEST_F(FileUtilTest, RemoveInterruptedWritesTakesOnlyOtherProcessesTemporaries) {
  const std::string ours = absl::StrCat("c.json.tmp.", ::getpid());
  for (const std::string& name :
       {std::string("a.json.tmp.999999999"), std::string("a.json"), ours,
        std::string("b.tmp.x"), std::string("d.tmp."), std::string(".tmp.12")}) {
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/" + name, "x").ok());
  }
  EXPECT_EQ(RemoveInterruptedWrites(dir_),
            std::vector<std::string>{dir_ + "/a.json.tmp.999999999"});
  std::set<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    left.insert(e.path().filename().string());
  }
  EXPECT_EQ(left, (std::set<std::string>{"a.json", ours, "b.tmp.x", "d.tmp.", ".tmp.12"}));
  EXPECT_TRUE(RemoveInterruptedWrites(dir_ + "/missing").empty());
}

TEST_F(FileUtilTest, ReadMissingFileIsNotFound) {
  EXPECT_EQ(ReadFile(dir_ + "/nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(FileUtilTest, MakeDirsCreatesParentsAndIsIdempotent) {
  std::string path = dir_ + "/a/b/c";
  ASSERT_TRUE(MakeDirs(path, 0700).ok());
  ASSERT_TRUE(MakeDirs(path, 0700).ok());
  EXPECT_TRUE(std::filesystem::is_directory(path));
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/file", "x").ok());
  EXPECT_EQ(MakeDirs(dir_ + "/file").code(), absl::StatusCode::kAlreadyExists);
}

TEST(DirNameTest, Cases) {
  EXPECT_EQ(DirName("/a/b"), "/a");
  EXPECT_EQ(DirName("/a/b/"), "/a");
  EXPECT_EQ(DirName("/a"), "/");
  EXPECT_EQ(DirName("b"), ".");
  EXPECT_EQ(DirName("a/b"), "a");
}

}  // namespace
}  // namespace berth
