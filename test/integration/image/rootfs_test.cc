// A container's root filesystem: an overlay of its image's layers, on this host's overlayfs.

#include "image/rootfs.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "gtest/gtest.h"

namespace berth::image {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Layers with long paths, as the real store has (…/layers/<64 hex>/diff): far more of them than
// their absolute paths would fit into mount(2)'s one page of options.
TEST(RootfsTest, ManyLayersWithLongPathsMount) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting overlayfs needs root";
  char tmpl[] = "/tmp/berth-rootfs-test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  std::vector<std::string> layers;
  for (int i = 0; i < 120; ++i) {
    const std::string layer =
        absl::StrCat(root, "/layers/", std::string(56, 'a'), absl::Hex(i, absl::kZeroPad8), "/diff");
    ASSERT_TRUE(MakeDirs(layer).ok());
    ASSERT_TRUE(WriteFileAtomic(layer + "/which", absl::StrCat(i)).ok());
    ASSERT_TRUE(WriteFileAtomic(layer + "/only-" + std::to_string(i), "x").ok());
    layers.push_back(layer);
  }
  const std::string dir = root + "/containers/c1";
  {
    absl::StatusOr<ScopedMount> mounted = MountRootfs(dir, layers);
    ASSERT_TRUE(mounted.ok()) << mounted.status();
    EXPECT_EQ(Read(dir + "/rootfs/which"), "119");  // the last layer is on top
    EXPECT_TRUE(std::filesystem::exists(dir + "/rootfs/only-0"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/rootfs/only-119"));
    ASSERT_TRUE(WriteFileAtomic(dir + "/rootfs/new", "y").ok());
    EXPECT_TRUE(std::filesystem::exists(dir + "/upper/new"));
    // The daemon's working directory is its own still.
    EXPECT_NE(std::filesystem::current_path(), dir);
  }
  EXPECT_TRUE(RemoveRootfs(dir).ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace berth::image
