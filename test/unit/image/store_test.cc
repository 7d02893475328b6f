#include "image/store.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "image/digest.h"

namespace berth::image {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kConfig[] =
    R"({"os":"linux","architecture":"amd64","config":{"User":"1000"},"rootfs":{"diff_ids":[]}})";

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-store-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    db_.reset();
    std::filesystem::remove_all(root_);
  }

  void Reopen(std::vector<std::string> pinned = {}) {
    store_.reset();
    db_.reset();
    auto db = SqliteDb::Open(root_ + "/berth.db");
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
    auto store = ImageStore::Open(db_.get(), root_, std::move(pinned));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  // Puts a complete layer on disk as a pull would.
  LayerRecord MakeLayer(const std::string& seed) {
    LayerRecord layer{DigestOf("chain" + seed), DigestOf("diff" + seed), 100, 3};
    const std::string dir = store_->LayerDir(layer.chain_id);
    EXPECT_TRUE(MakeDirs(dir + "/diff").ok());
    EXPECT_TRUE(WriteFileAtomic(dir + "/diff/file", seed).ok());
    EXPECT_TRUE(ImageStore::WriteLayerJson(dir, layer).ok());
    return layer;
  }

  ImagePtr AddImage(const std::string& seed, const std::vector<LayerRecord>& layers,
                    const std::vector<std::string>& names) {
    ImageRecord image;
    image.id = DigestOf("config" + seed);
    image.manifest_digest = DigestOf("manifest" + seed);
    for (const LayerRecord& l : layers) image.chain_ids.push_back(l.chain_id);
    image.config_json = kConfig;
    image.config = *ParseImageConfig(kConfig);
    image.size = 1234;
    absl::StatusOr<ImagePtr> added = store_->Add(image, layers, names);
    EXPECT_TRUE(added.ok()) << added.status();
    return added.ok() ? *added : nullptr;
  }

  std::string root_;
  std::unique_ptr<SqliteDb> db_;
  std::unique_ptr<ImageStore> store_;
};

TEST_F(StoreTest, ResolvesByIdTagDigestAndPrefix) {
  LayerRecord base = MakeLayer("a");
  ImagePtr image = AddImage("1", {base},
                            {"docker.io/library/busybox:latest",
                             "docker.io/library/busybox@" + DigestOf("manifest1")});
  ASSERT_NE(image, nullptr);
  const std::string hex(DigestHex(image->id));
  for (const std::string& name :
       {image->id, hex, hex.substr(0, 12), std::string("busybox"), std::string("busybox:latest"),
        std::string("docker.io/library/busybox:latest"), std::string("library/busybox"),
        "busybox@" + DigestOf("manifest1"), "busybox:other@" + DigestOf("manifest1")}) {
    absl::StatusOr<ImagePtr> found = store_->Resolve(name);
    ASSERT_TRUE(found.ok()) << name << ": " << found.status();
    EXPECT_EQ((*found)->id, image->id) << name;
  }
  EXPECT_EQ(store_->Resolve("busybox:1.0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Resolve("abcdef").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Resolve("Bad Name!").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, PersistsAcrossReopen) {
  LayerRecord base = MakeLayer("a");
  LayerRecord top = MakeLayer("b");
  ImagePtr image = AddImage("1", {base, top}, {"docker.io/library/app:1"});
  Reopen();
  absl::StatusOr<ImagePtr> found = store_->Resolve("app:1");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ((*found)->chain_ids, image->chain_ids);
  EXPECT_EQ((*found)->size, 1234);
  EXPECT_EQ((*found)->config.user, "1000");
  EXPECT_EQ(store_->Usage().bytes, 200);
  EXPECT_EQ(store_->Usage().inodes, 6);
}

TEST_F(StoreTest, TagMovesToTheNewImage) {
  LayerRecord base = MakeLayer("a");
  ImagePtr old_image = AddImage("1", {base}, {"docker.io/library/app:latest"});
  ImagePtr new_image = AddImage("2", {base}, {"docker.io/library/app:latest"});
  EXPECT_EQ((*store_->Resolve("app"))->id, new_image->id);
  absl::StatusOr<ImagePtr> old_now = store_->Resolve(old_image->id);
  ASSERT_TRUE(old_now.ok());
  EXPECT_THAT((*old_now)->repo_tags, IsEmpty());  // dangling, still listed
  EXPECT_EQ(store_->List().size(), 2u);
}

TEST_F(StoreTest, RemovingOneTagKeepsTheOthers) {
  LayerRecord base = MakeLayer("a");
  ImagePtr image = AddImage("1", {base}, {"docker.io/library/app:1", "docker.io/library/app:2"});
  ASSERT_TRUE(store_->RemoveByName("app:1").ok());
  absl::StatusOr<ImagePtr> left = store_->Resolve(image->id);
  ASSERT_TRUE(left.ok());
  EXPECT_THAT((*left)->repo_tags, ElementsAre("docker.io/library/app:2"));
  EXPECT_TRUE(std::filesystem::exists(store_->LayerDir(base.chain_id)));
  ASSERT_TRUE(store_->RemoveByName("app:2").ok());
  EXPECT_EQ(store_->Resolve(image->id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(store_->LayerDir(base.chain_id)));
  EXPECT_EQ(store_->Usage().bytes, 0);
  EXPECT_TRUE(store_->RemoveByName("app:2").ok());  // unknown: OK
}

TEST_F(StoreTest, RemoveByIdKeepsSharedLayers) {
  LayerRecord base = MakeLayer("a");
  LayerRecord top = MakeLayer("b");
  ImagePtr one = AddImage("1", {base}, {"docker.io/library/one:1"});
  ImagePtr two = AddImage("2", {base, top}, {"docker.io/library/two:1", "docker.io/library/two:2"});
  ASSERT_TRUE(store_->RemoveByName(std::string(DigestHex(two->id))).ok());
  EXPECT_EQ(store_->Resolve("two:2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(std::filesystem::exists(store_->LayerDir(base.chain_id)));
  EXPECT_FALSE(std::filesystem::exists(store_->LayerDir(top.chain_id)));
  Reopen();
  EXPECT_TRUE(store_->Resolve("one:1").ok());
  EXPECT_TRUE(std::filesystem::exists(store_->LayerDir(base.chain_id)));
}

TEST_F(StoreTest, LeasedLayersOutliveTheirImage) {
  LayerRecord base = MakeLayer("a");
  ImagePtr image = AddImage("1", {base}, {"docker.io/library/one:1"});
  {
    ImageStore::Lease lease(store_.get(), {base.chain_id});
    ASSERT_TRUE(store_->RemoveByName("one:1").ok());
    EXPECT_TRUE(std::filesystem::exists(store_->LayerDir(base.chain_id)));
  }
  EXPECT_FALSE(std::filesystem::exists(store_->LayerDir(base.chain_id)));
  EXPECT_EQ(store_->Usage().bytes, 0);
}

TEST_F(StoreTest, FailedPullLeavesNothing) {
  LayerRecord orphan = MakeLayer("x");  // completed by a pull that then failed
  {
    ImageStore::Lease lease(store_.get(), {orphan.chain_id});
  }
  EXPECT_FALSE(std::filesystem::exists(store_->LayerDir(orphan.chain_id)));
}

TEST_F(StoreTest, StartUpCleansInterruptedPulls) {
  LayerRecord kept = MakeLayer("a");
  AddImage("1", {kept}, {"docker.io/library/one:1"});
  LayerRecord orphan = MakeLayer("x");
  absl::StatusOr<std::string> tmp = store_->MakeTempDir("layer");
  ASSERT_TRUE(tmp.ok());
  ASSERT_TRUE(WriteFileAtomic(*tmp + "/blob", "partial").ok());
  Reopen();
  EXPECT_TRUE(std::filesystem::exists(store_->LayerDir(kept.chain_id)));
  EXPECT_FALSE(std::filesystem::exists(store_->LayerDir(orphan.chain_id)));
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/tmp"));
}

TEST_F(StoreTest, PinnedPatterns) {
  Reopen({"registry.k8s.io/pause*"});
  LayerRecord base = MakeLayer("a");
  ImagePtr pause = AddImage("1", {base}, {"registry.k8s.io/pause:3.10"});
  ImagePtr other = AddImage("2", {base}, {"docker.io/library/busybox:latest"});
  EXPECT_TRUE(pause->pinned);
  EXPECT_FALSE(other->pinned);
}

TEST_F(StoreTest, ReadLayerNeedsACompleteLayer) {
  LayerRecord layer = MakeLayer("a");
  absl::StatusOr<LayerRecord> read = store_->ReadLayer(layer.chain_id);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->diff_id, layer.diff_id);
  EXPECT_EQ(store_->ReadLayer(DigestOf("nothing")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace berth::image
