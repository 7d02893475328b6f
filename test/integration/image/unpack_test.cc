// UnpackLayer as root on a real filesystem: every entry type, whiteouts, and hostile layers.

#include "image/unpack.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/fixtures/image_builder.h"

namespace berth::image {
namespace {

using ::berth::testing::Blob;
using ::berth::testing::Compression;
using ::berth::testing::LayerBuilder;
using ::testing::HasSubstr;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A layer directory and, beside it, a sentinel tree that no layer may touch.
class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "unpacking as root needs root";
    char tmpl[] = "/tmp/berth-unpack-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    dest_ = dir_ + "/layer/diff";
    outside_ = dir_ + "/outside";
    std::filesystem::create_directories(dest_);
    std::filesystem::create_directories(outside_);
    std::ofstream(outside_ + "/victim") << "original";
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<UnpackResult> Unpack(const Blob& blob, const UnpackLimits& limits = {}) {
    const std::string path = dir_ + "/blob";
    std::ofstream(path, std::ios::binary | std::ios::trunc) << blob.bytes;
    return UnpackLayer(path, dest_, limits);
  }

  // The sentinel tree is exactly as SetUp made it and nothing appeared next to the layer.
  void ExpectOutsideUntouched() {
    EXPECT_EQ(Slurp(outside_ + "/victim"), "original");
    size_t entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(outside_)) {
      (void)e;
      ++entries;
    }
    EXPECT_EQ(entries, 1u);
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/layer/evil"));
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/evil"));
    EXPECT_FALSE(std::filesystem::exists("/tmp/berth-unpack-escaped"));
  }

  std::string dir_, dest_, outside_;
};

TEST_F(UnpackTest, EveryEntryTypeRoundTrips) {
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    std::filesystem::remove_all(dest_);
    std::filesystem::create_directories(dest_);
    LayerBuilder layer;
    layer.Mtime(1600000000)
        .Dir("usr", 0755)
        .Dir("usr/bin", 0750, 1000, 1000)
        .File("usr/bin/tool", "#!/bin/sh\necho hi\n", 04755)
        .File("usr/owned", "data", 0640, 1000, 2000)
        .Xattr("user.berth", "yes")
        .Symlink("usr/link", "/usr/bin/tool")
        .Hardlink("usr/hard", "usr/owned")
        .Fifo("usr/fifo")
        .CharDevice("usr/null", 1, 3);
    absl::StatusOr<UnpackResult> r = Unpack(layer.Build(c));
    ASSERT_TRUE(r.ok()) << r.status();
    struct stat st;
    ASSERT_EQ(::stat((dest_ + "/usr/bin/tool").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 04755u);
    EXPECT_EQ(st.st_mtime, 1600000000);
    EXPECT_EQ(Slurp(dest_ + "/usr/bin/tool"), "#!/bin/sh\necho hi\n");
    ASSERT_EQ(::stat((dest_ + "/usr/bin").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 1000u);
    EXPECT_EQ(st.st_mode & 07777, 0750u);
    EXPECT_EQ(st.st_mtime, 1600000000);  // set after its children were written
    ASSERT_EQ(::stat((dest_ + "/usr/owned").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 1000u);
    EXPECT_EQ(st.st_gid, 2000u);
    EXPECT_EQ(st.st_nlink, 2u);
    char value[8] = {};
    EXPECT_EQ(::getxattr((dest_ + "/usr/owned").c_str(), "user.berth", value, sizeof value), 3);
    EXPECT_STREQ(value, "yes");
    EXPECT_EQ(std::filesystem::read_symlink(dest_ + "/usr/link"), "/usr/bin/tool");
    ASSERT_EQ(::lstat((dest_ + "/usr/fifo").c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));
    ASSERT_EQ(::lstat((dest_ + "/usr/null").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(st.st_rdev, makedev(1, 3));
    EXPECT_EQ(r->diff_id, layer.Build(c).diff_id);
    EXPECT_EQ(r->size_bytes, 22);
    EXPECT_EQ(r->inodes, 8);
  }
}

TEST_F(UnpackTest, WhiteoutsBecomeOverlayWhiteouts) {
  LayerBuilder layer;
  layer.Dir("etc").File("etc/keep", "k").File("etc/gone", "g").Whiteout("etc/gone")
      .Whiteout("etc/never-existed").Dir("var").Opaque("var").Opaque("new/dir");
  absl::StatusOr<UnpackResult> r = Unpack(layer.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  struct stat st;
  ASSERT_EQ(::lstat((dest_ + "/etc/gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  ASSERT_EQ(::lstat((dest_ + "/etc/never-existed").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_FALSE(std::filesystem::exists(dest_ + "/etc/.wh.gone"));
  EXPECT_TRUE(std::filesystem::exists(dest_ + "/etc/keep"));
  for (const char* dir : {"/var", "/new/dir"}) {
    char value[4] = {};
    EXPECT_EQ(::getxattr((dest_ + dir).c_str(), "trusted.overlay.opaque", value, sizeof value), 1)
        << dir;
    EXPECT_EQ(value[0], 'y');
    EXPECT_FALSE(std::filesystem::exists(dest_ + dir + "/.wh..wh..opq"));
  }
}

TEST_F(UnpackTest, LaterEntriesReplaceEarlierOnes) {
  LayerBuilder layer;
  layer.File("x", "file").Dir("x").File("x/inner", "1").File("x", "file again")
      .Symlink("l", "target").File("l", "now a file");
  absl::StatusOr<UnpackResult> r = Unpack(layer.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Slurp(dest_ + "/x"), "file again");
  EXPECT_EQ(Slurp(dest_ + "/l"), "now a file");
}

TEST_F(UnpackTest, DotDotIsRefused) {
  for (const std::string name : {"../evil", "a/../../evil", "./../outside/victim"}) {
    LayerBuilder layer;
    layer.File(name, "pwned");
    absl::StatusOr<UnpackResult> r = Unpack(layer.Build());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(r.status().ToString(), HasSubstr(name)) << name;
    ExpectOutsideUntouched();
  }
}

TEST_F(UnpackTest, AbsoluteNamesStayInside) {
  LayerBuilder layer;
  layer.File("/abs/file", "inside");
  absl::StatusOr<UnpackResult> r = Unpack(layer.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Slurp(dest_ + "/abs/file"), "inside");
  ExpectOutsideUntouched();
}

TEST_F(UnpackTest, SymlinkEscapesResolveInsideTheLayer) {
  // Writing through a symlink lands beneath the layer root, never where the link points on the
  // host: an absolute link, a relative link climbing out, and a chain of both.
  LayerBuilder layer;
  layer.Symlink("abs", outside_)
      .File("abs/victim", "pwned")
      .Symlink("rel", "../../../../../../../../tmp")
      .File("rel/berth-unpack-escaped", "pwned")
      .Symlink("chain", "rel")
      .File("chain/second", "pwned");
  absl::StatusOr<UnpackResult> r = Unpack(layer.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectOutsideUntouched();
  EXPECT_EQ(Slurp(dest_ + outside_ + "/victim"), "pwned");
  EXPECT_EQ(Slurp(dest_ + "/tmp/berth-unpack-escaped"), "pwned");
}

TEST_F(UnpackTest, HardLinksCannotReachOutside) {
  for (const std::string& target : {outside_ + "/victim", std::string("../outside/victim"),
                                    std::string("missing")}) {
    std::filesystem::remove_all(dest_);
    std::filesystem::create_directories(dest_);
    LayerBuilder layer;
    layer.Hardlink("evil", target);
    absl::StatusOr<UnpackResult> r = Unpack(layer.Build());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << target;
    EXPECT_THAT(r.status().ToString(), HasSubstr("evil")) << target;
    ExpectOutsideUntouched();
    struct stat st;
    ASSERT_EQ(::stat((outside_ + "/victim").c_str(), &st), 0);
    EXPECT_EQ(st.st_nlink, 1u);
  }
  // A hard link through a symlink to the host resolves inside the layer too.
  std::filesystem::remove_all(dest_);
  std::filesystem::create_directories(dest_);
  LayerBuilder layer;
  layer.Symlink("out", outside_).Hardlink("evil", "out/victim");
  EXPECT_FALSE(Unpack(layer.Build()).ok());
  ExpectOutsideUntouched();
}

TEST_F(UnpackTest, SymlinkReplacedByDirectoryStaysInside) {
  LayerBuilder layer;
  layer.Symlink("a", outside_).Dir("a").File("a/f", "inside");
  absl::StatusOr<UnpackResult> r = Unpack(layer.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(std::filesystem::is_directory(std::filesystem::symlink_status(dest_ + "/a")));
  EXPECT_EQ(Slurp(dest_ + "/a/f"), "inside");
  ExpectOutsideUntouched();
}

TEST_F(UnpackTest, CorruptDataIsRefused) {
  Blob good = LayerBuilder().File("f", std::string(100000, 'x')).Build(Compression::kGzip);
  Blob truncated = good;
  truncated.bytes.resize(good.bytes.size() / 2);
  absl::StatusOr<UnpackResult> r = Unpack(truncated);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().ToString(), HasSubstr(dir_ + "/blob"));
  Blob garbage;
  garbage.bytes = "this is not a layer at all, not even close to a tar header";
  EXPECT_EQ(Unpack(garbage).status().code(), absl::StatusCode::kInvalidArgument);
  Blob empty;
  EXPECT_EQ(Unpack(empty).status().code(), absl::StatusCode::kInvalidArgument);
  ExpectOutsideUntouched();
}

std::string Deep(int components, const std::string& leaf) {
  std::string path;
  for (int i = 0; i < components; ++i) path += "d/";
  return path + leaf;
}

TEST_F(UnpackTest, ThousandsOfMissingParentsNeitherCrashNorRecurse) {
  // One file under 2000 directories the layer never lists (under PATH_MAX): each was a stack
  // frame with a 4 KiB buffer, and the gRPC thread's stack overflowed.
  LayerBuilder layer;
  layer.File(Deep(2000, "f"), "deep");
  absl::StatusOr<UnpackResult> r = Unpack(layer.Build(), {.max_depth = 4096});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Slurp(dest_ + "/" + Deep(2000, "f")), "deep");
  // With the default depth bound it is refused, naming the setting.
  std::filesystem::remove_all(dest_);
  std::filesystem::create_directories(dest_);
  r = Unpack(layer.Build());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("images.max_path_depth"));
  ExpectOutsideUntouched();
}

TEST_F(UnpackTest, SymlinksCannotDeepenAPathPastTheBound) {
  // A two-component name whose link leads 100 components down.
  LayerBuilder layer;
  layer.Symlink("l", Deep(100, "x")).File("l/f", "deep");
  absl::StatusOr<UnpackResult> r = Unpack(layer.Build(), {.max_depth = 50});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("images.max_path_depth"));
  ExpectOutsideUntouched();
}

TEST_F(UnpackTest, MissingParentsAreCreatedThroughDanglingSymlinks) {
  LayerBuilder layer;
  layer.Symlink("lib", "usr/lib64").File("lib/x/y/f", "via link");
  absl::StatusOr<UnpackResult> r = Unpack(layer.Build());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Slurp(dest_ + "/usr/lib64/x/y/f"), "via link");
  // A file in the way of a directory is an error, not a loop.
  std::filesystem::remove_all(dest_);
  std::filesystem::create_directories(dest_);
  LayerBuilder blocked;
  blocked.File("a", "file").File("a/b/c", "x");
  EXPECT_EQ(Unpack(blocked.Build()).status().code(), absl::StatusCode::kInvalidArgument);
  ExpectOutsideUntouched();
}

TEST_F(UnpackTest, EntriesAndBytesAreBounded) {
  LayerBuilder many;
  for (int i = 0; i < 20; ++i) many.File("f" + std::to_string(i), "x");
  absl::StatusOr<UnpackResult> r = Unpack(many.Build(), {.max_entries = 10});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("images.max_layer_entries"));

  // A gzip bomb: a few KiB that expand to 8 MiB.
  std::filesystem::remove_all(dest_);
  std::filesystem::create_directories(dest_);
  Blob bomb = LayerBuilder().File("zeros", std::string(8 << 20, '\0')).Build(Compression::kGzip);
  ASSERT_LT(bomb.bytes.size(), 64u << 10);
  r = Unpack(bomb, {.max_bytes = 1 << 20});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("images.max_layer_size"));

  // The image's budget is shared by its layers.
  std::atomic<int64_t> image{(6 << 20)};
  std::filesystem::remove_all(dest_);
  std::filesystem::create_directories(dest_);
  Blob layer = LayerBuilder().File("f", std::string(3 << 20, 'x')).Build();
  r = Unpack(layer, {.image_bytes = &image, .max_image_bytes = 8 << 20});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("images.max_image_size"));
  // Spent already by the other layers when this one starts: its very first read is past it,
  // which is the reason given (not "not a tar archive", as the format detection saw it).
  image = 8 << 20;
  std::filesystem::remove_all(dest_);
  std::filesystem::create_directories(dest_);
  r = Unpack(layer, {.image_bytes = &image, .max_image_bytes = 8 << 20});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("images.max_image_size"));
  ExpectOutsideUntouched();
}

TEST_F(UnpackTest, ALongUnpackStopsWhenAskedTo) {
  // 24 MiB of content: the stop check is asked along the way, and its error ends the unpack.
  Blob layer = LayerBuilder().File("big", std::string(24 << 20, 'x')).Build(Compression::kGzip);
  int asked = 0;
  absl::StatusOr<UnpackResult> r = Unpack(layer, {.stop = [&]() -> absl::Status {
    return ++asked < 2 ? absl::OkStatus() : absl::CancelledError("every caller went away");
  }});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("every caller went away"));
  EXPECT_EQ(asked, 2);
  ExpectOutsideUntouched();
  // Asked a few times in a whole unpack, not per block.
  std::filesystem::remove_all(dest_);
  std::filesystem::create_directories(dest_);
  asked = 0;
  r = Unpack(layer, {.stop = [&] {
    ++asked;
    return absl::OkStatus();
  }});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(asked, 3);
  EXPECT_LE(asked, 8);
}

TEST_F(UnpackTest, SparseFilesStaySparse) {
  // GNU tar's sparse format, from a 1 GiB file with one byte written in its middle.
  const std::string src = dir_ + "/src";
  std::filesystem::create_directories(src);
  {
    std::ofstream f(src + "/sparse", std::ios::binary);
    f.seekp(512 << 20);
    f << 'x';
  }
  std::filesystem::resize_file(src + "/sparse", int64_t{1} << 30);
  const std::string tar = dir_ + "/sparse.tar";
  ASSERT_EQ(std::system(("tar --sparse -C " + src + " -cf " + tar + " sparse").c_str()), 0);
  ASSERT_LT(std::filesystem::file_size(tar), 1u << 20);
  Blob blob;
  blob.bytes = Slurp(tar);
  absl::StatusOr<UnpackResult> r = Unpack(blob);
  ASSERT_TRUE(r.ok()) << r.status();
  struct stat st;
  ASSERT_EQ(::stat((dest_ + "/sparse").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, int64_t{1} << 30);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
  std::ifstream f(dest_ + "/sparse", std::ios::binary);
  f.seekg(512 << 20);
  EXPECT_EQ(f.get(), 'x');
}

}  // namespace
}  // namespace berth::image
