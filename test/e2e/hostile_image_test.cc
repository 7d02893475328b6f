// Hostile layers pulled by a running berthd: tar tricks that try to leave the layer, to plant what
// a container should not have, or to exhaust the node. Each case either fails the pull with a
// clear error or pulls a layer whose every entry stayed inside it; HostileTest checks that the
// victim outside berthd's root is untouched, that berthd still serves, and that nothing is left.

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/e2e/hostile_env.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using Code = absl::StatusCode;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t TypeOf(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & S_IFMT : 0;
}

class HostileTarTest : public HostileTest {
 protected:
  // Serves a one-layer image and expects the pull to fail.
  void Refused(LayerBuilder layer, Code code, const std::string& says) {
    ExpectRefused(ServeImage("tar/case", {layer.Build()}), code, says);
  }
  void Refused(const RawTar& tar, Code code, const std::string& says) {
    ExpectRefused(ServeImage("tar/case", {tar.Build()}), code, says);
  }
  // Serves a one-layer image, expects the pull to succeed and returns the layer's directory.
  std::string Pulled(const Blob& layer) {
    if (ExpectPulled(ServeImage("tar/case", {layer})).empty()) return "";
    return LayerDiff(layer.diff_id);
  }
};

// --- names that leave the layer

TEST_F(HostileTarTest, DotDotEntryIsRefused) {
  Refused(LayerBuilder().File("ok", "1").File(DotDotToVictim() + "/victimdir/pwned", "x"),
          Code::kInvalidArgument, "\"..\" would leave the layer");
}

TEST_F(HostileTarTest, DotDotThatStaysInsideIsRefusedToo) {
  // berth refuses every "..": no legitimate layer needs one (documented in unpack.h).
  Refused(LayerBuilder().Dir("a").File("a/../b", "x"), Code::kInvalidArgument,
          "\"..\" would leave the layer");
}

TEST_F(HostileTarTest, AbsolutePathIsRootedInTheLayer) {
  const std::string diff = Pulled(LayerBuilder().File(victim_ + "/victimdir/abs", "x").Build());
  EXPECT_EQ(Read(diff + "/" + VictimInLayer() + "/victimdir/abs"), "x");
}

// --- symlinks and hard links out

TEST_F(HostileTarTest, WriteThroughAbsoluteSymlinkStaysInside) {
  const std::string diff =
      Pulled(LayerBuilder().Symlink("esc", victim_ + "/victimdir").File("esc/pwned", "x").Build());
  EXPECT_EQ(TypeOf(diff + "/esc"), S_IFLNK);
  EXPECT_EQ(Read(diff + "/" + VictimInLayer() + "/victimdir/pwned"), "x");
}

TEST_F(HostileTarTest, WriteThroughDotDotSymlinkStaysInside) {
  const std::string diff = Pulled(LayerBuilder()
                                      .Dir("a")
                                      .Symlink("a/esc", DotDotToVictim() + "/victimdir")
                                      .File("a/esc/pwned", "x")
                                      .Build());
  EXPECT_EQ(Read(diff + "/" + VictimInLayer() + "/victimdir/pwned"), "x");
}

TEST_F(HostileTarTest, FileReplacingASymlinkToAHostFileReplacesTheLink) {
  const std::string diff =
      Pulled(LayerBuilder().Symlink("f", victim_ + "/victim").File("f", "overwritten").Build());
  EXPECT_EQ(TypeOf(diff + "/f"), S_IFREG);
  EXPECT_EQ(Read(diff + "/f"), "overwritten");
}

TEST_F(HostileTarTest, HardLinkToAnAbsoluteHostPathIsRefused) {
  Refused(LayerBuilder().Hardlink("h", victim_ + "/victim"), Code::kInvalidArgument,
          "hard link to \"" + victim_ + "/victim\"");
}

TEST_F(HostileTarTest, HardLinkWithDotDotIsRefused) {
  Refused(LayerBuilder().Hardlink("h", DotDotToVictim() + "/victim"), Code::kInvalidArgument,
          "would leave the layer");
}

TEST_F(HostileTarTest, HardLinkThroughAnEscapingSymlinkIsRefused) {
  Refused(LayerBuilder().Symlink("d", victim_ + "/victimdir").Hardlink("h", "d/inner"),
          Code::kInvalidArgument, "hard link to \"d/inner\"");
}

TEST_F(HostileTarTest, HardLinkToAnEscapingSymlinkLinksTheSymlink) {
  // linkat() without AT_SYMLINK_FOLLOW: the new name is the symlink itself, only text.
  const std::string diff =
      Pulled(LayerBuilder().Symlink("s", victim_ + "/victim").Hardlink("h", "s").Build());
  EXPECT_EQ(TypeOf(diff + "/h"), S_IFLNK);
}

// --- whiteouts

TEST_F(HostileTarTest, WhiteoutThroughASymlinkStaysInside) {
  const std::string diff =
      Pulled(LayerBuilder().Symlink("d", victim_ + "/victimdir").Whiteout("d/inner").Build());
  EXPECT_EQ(TypeOf(diff + "/" + VictimInLayer() + "/victimdir/inner"), S_IFCHR);
}

TEST_F(HostileTarTest, OpaqueMarkerThroughASymlinkStaysInside) {
  const std::string diff =
      Pulled(LayerBuilder().Symlink("d", victim_ + "/victimdir").Opaque("d").Build());
  char value[8];
  EXPECT_EQ(::getxattr((diff + "/" + VictimInLayer() + "/victimdir").c_str(),
                       "trusted.overlay.opaque", value, sizeof value),
            1);
}

TEST_F(HostileTarTest, WhiteoutOfDotDotIsRefused) {
  Refused(LayerBuilder().Dir("a").File("a/.wh...", ""), Code::kInvalidArgument, "bad whiteout");
}

TEST_F(HostileTarTest, WhiteoutOfAMissingFileIsAWhiteout) {
  const std::string diff = Pulled(LayerBuilder().Whiteout("nothing").Build());
  struct stat st;
  ASSERT_EQ(::lstat((diff + "/nothing").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
}

// --- across layers

TEST_F(HostileTarTest, SymlinkInOneLayerIsNotFollowedByTheNext) {
  const Blob lower = LayerBuilder().Symlink("evil", victim_ + "/victimdir").Build();
  const Blob upper = LayerBuilder().Dir("evil").File("evil/pwned", "x").Build();
  ASSERT_FALSE(ExpectPulled(ServeImage("tar/cross", {lower, upper})).empty());
  EXPECT_EQ(TypeOf(LayerDiff(lower.diff_id) + "/evil"), S_IFLNK);
  EXPECT_EQ(Read(LayerDiff(ChainId(lower.diff_id, upper.diff_id)) + "/evil/pwned"), "x");
}

TEST_F(HostileTarTest, WhiteoutUnderALowerLayersSymlinkStaysInside) {
  const Blob lower = LayerBuilder().Symlink("evil", victim_ + "/victimdir").Build();
  const Blob upper = LayerBuilder().Whiteout("evil/inner").Build();
  ASSERT_FALSE(ExpectPulled(ServeImage("tar/cross", {lower, upper})).empty());
  EXPECT_EQ(TypeOf(LayerDiff(ChainId(lower.diff_id, upper.diff_id)) + "/evil/inner"), S_IFCHR);
}

// --- long names (pax and GNU)

TEST_F(HostileTarTest, PaxPathWithDotDotIsRefused) {
  // The header says "harmless"; the pax record, which wins, climbs out.
  const std::string path = std::string(150, 'a') + "/" + DotDotToVictim() + "/victimdir/pax";
  Refused(RawTar().Pax({{"path", path}}).Entry({.name = "harmless", .size = 1}, "x"),
          Code::kInvalidArgument, "would leave the layer");
}

TEST_F(HostileTarTest, PaxLongNameIsKeptWhole) {
  const std::string path =
      std::string(200, 'a') + "/" + std::string(200, 'b') + "/" + std::string(250, 'c');
  const std::string diff = Pulled(LayerBuilder().File(path, "long").Build());
  EXPECT_EQ(Read(diff + "/" + path), "long");
}

TEST_F(HostileTarTest, PaxLinkpathWithDotDotIsRefused) {
  Refused(RawTar()
              .Pax({{"linkpath", DotDotToVictim() + "/victim"}})
              .Entry({.name = "h", .type = '1', .link = "harmless"}),
          Code::kInvalidArgument, "would leave the layer");
}

TEST_F(HostileTarTest, GnuLongNameWithDotDotIsRefused) {
  Refused(RawTar()
              .GnuLongName(std::string(120, 'g') + "/" + DotDotToVictim() + "/victimdir/gnu")
              .Entry({.name = "harmless", .size = 1}, "x"),
          Code::kInvalidArgument, "would leave the layer");
}

TEST_F(HostileTarTest, GnuLongLinkSymlinkThenWriteStaysInside) {
  // A symlink whose target (over 100 bytes, in a 'K' entry) names the victim, then a file under
  // it, in GNU format.
  std::string target = victim_ + "/";
  for (int i = 0; i < 40; ++i) target += "./";
  target += "victimdir";
  const std::string diff = Pulled(
      LayerBuilder().Format(TarFormat::kGnu).Symlink("l", target).File("l/pwned", "x").Build());
  EXPECT_EQ(std::filesystem::read_symlink(diff + "/l").string(), target);
  EXPECT_EQ(Read(diff + "/" + VictimInLayer() + "/victimdir/pwned"), "x");
}

// --- devices and xattrs: kept as the layer says (unpack.h), inside the layer only; whether a
// container may use a device is the device cgroup's and the OCI spec's business.

TEST_F(HostileTarTest, CharDeviceIsKeptInTheLayer) {
  const std::string diff = Pulled(LayerBuilder().CharDevice("mem", 1, 1).Build());
  struct stat st;
  ASSERT_EQ(::lstat((diff + "/mem").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 1));
}

TEST_F(HostileTarTest, BlockDeviceIsKeptInTheLayer) {
  const std::string diff = Pulled(LayerBuilder().BlockDevice("disk", 8, 0).Build());
  struct stat st;
  ASSERT_EQ(::lstat((diff + "/disk").c_str(), &st), 0);
  EXPECT_TRUE(S_ISBLK(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(8, 0));
}

TEST_F(HostileTarTest, FileCapabilityIsKept) {
  // security.capability v2: cap_net_raw+ep.
  const std::string cap(
      "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00",
      20);
  const std::string diff =
      Pulled(LayerBuilder().File("ping", "binary", 0755).Xattr("security.capability", cap).Build());
  char value[64];
  EXPECT_EQ(::getxattr((diff + "/ping").c_str(), "security.capability", value, sizeof value), 20);
}

TEST_F(HostileTarTest, OversizedXattrIsRefused) {
  Refused(LayerBuilder().File("f", "x").Xattr("user.big", std::string(256 << 10, 'x')),
          Code::kInvalidArgument, "set xattr user.big");
}

// --- bombs and limits

TEST_F(HostileTarTest, PathDeeperThanMaxPathDepthIsRefused) {
  std::string path = "d";
  for (int i = 0; i < kMaxPathDepth; ++i) path += "/d";
  Refused(LayerBuilder().File(path, "deep"), Code::kResourceExhausted, "images.max_path_depth");
}

TEST_F(HostileTarTest, PathDeepAfterFollowingSymlinksIsRefused) {
  // Each entry is shallow; the symlink makes the last one deeper than the limit.
  std::string deep = "d";
  for (int i = 1; i < kMaxPathDepth - 2; ++i) deep += "/d";
  Refused(LayerBuilder().Symlink("s", deep).File("s/x/y/z/w", "deep"), Code::kResourceExhausted,
          "images.max_path_depth");
}

TEST_F(HostileTarTest, SymlinkLoopIsRefused) {
  Refused(LayerBuilder().Symlink("a", "b").Symlink("b", "a").File("a/x", "loop"),
          Code::kInvalidArgument, "levels of symbolic links");
}

TEST_F(HostileTarTest, MoreEntriesThanMaxLayerEntriesIsRefused) {
  LayerBuilder layer;
  for (int i = 0; i <= kMaxLayerEntries; ++i) layer.File(absl::StrCat("f", i), "");
  Refused(layer, Code::kResourceExhausted, "images.max_layer_entries");
}

TEST_F(HostileTarTest, GzipBombIsStoppedAtMaxLayerSize) {
  // 64 MiB of zeros, about 64 KiB compressed.
  Refused(LayerBuilder().File("zeros", std::string(64 << 20, '\0')), Code::kResourceExhausted,
          "images.max_layer_size");
}

TEST_F(HostileTarTest, LayersTogetherOverMaxImageSizeAreRefused) {
  std::vector<Blob> layers;
  for (int i = 0; i < 3; ++i) {
    layers.push_back(
        LayerBuilder().File(absl::StrCat("part", i), std::string(3 << 20, 'a' + i)).Build());
  }
  ExpectRefused(ServeImage("tar/big", layers), Code::kResourceExhausted, "images.max_image_size");
}

TEST_F(HostileTarTest, SparseFileClaimingATebibyteStaysSparse) {
  // GNU sparse 0.1 in pax records: 1 TiB apparent size, 5 bytes of data at 512 GiB.
  const int64_t size = int64_t{1} << 40;
  const std::string diff = Pulled(RawTar()
                                      .Pax({{"GNU.sparse.size", std::to_string(size)},
                                            {"GNU.sparse.numblocks", "1"},
                                            {"GNU.sparse.map", absl::StrCat(size / 2, ",5")}})
                                      .Entry({.name = "sparse", .size = 5}, "hello")
                                      .Build());
  struct stat st;
  ASSERT_EQ(::stat((diff + "/sparse").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, size);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "the holes were written out";
}

TEST_F(HostileTarTest, TruncatedEntryIsRefused) {
  // The header announces 1 GiB; the stream ends after 512 bytes of it.
  RawTar tar;
  tar.Entry({.name = "f", .size = int64_t{1} << 30}, std::string(512, 'x'));
  ExpectRefused(ServeImage("tar/case", {BlobOf(tar.Truncated())}), Code::kInvalidArgument, "layer");
}

TEST_F(HostileTarTest, NotATarIsRefused) {
  ExpectRefused(ServeImage("tar/case", {BlobOf(std::string(4096, '\x7f'))}), Code::kInvalidArgument,
                "layer");
}

}  // namespace
}  // namespace berth::testing
