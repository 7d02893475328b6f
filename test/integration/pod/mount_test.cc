// ScopedMount with a real tmpfs, as a pod's /dev/shm is made.

#include "base/mount.h"

#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>

#include "gtest/gtest.h"

namespace berth {
namespace {

TEST(ScopedMountTest, TmpfsIsMountedAndUnmounted) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting needs root";
  char tmpl[] = "/tmp/berth-mount-test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string shm = std::string(tmpl) + "/shm";
  {
    absl::StatusOr<ScopedMount> mount =
        ScopedMount::Tmpfs(shm, MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
    ASSERT_TRUE(mount.ok()) << mount.status();
    EXPECT_TRUE(IsMountPoint(shm));
    struct statfs fs;
    ASSERT_EQ(statfs(shm.c_str(), &fs), 0);
    EXPECT_EQ(fs.f_blocks * fs.f_bsize, 64u << 20);
    struct stat st;
    ASSERT_EQ(stat(shm.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 01777u);
    ScopedMount moved = *std::move(mount);
    EXPECT_EQ(moved.target(), shm);
  }
  EXPECT_FALSE(IsMountPoint(shm));
  EXPECT_TRUE(Unmount(shm).ok());  // nothing mounted: OK
  {
    absl::StatusOr<ScopedMount> kept = ScopedMount::Tmpfs(shm, 0, "size=1m");
    ASSERT_TRUE(kept.ok());
    EXPECT_EQ(kept->Release(), shm);
  }
  EXPECT_TRUE(IsMountPoint(shm));
  EXPECT_TRUE(Unmount(shm).ok());
  EXPECT_FALSE(IsMountPoint(shm));
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace berth
