// ImagePuller over a fake registry: real store, real unpacking (as root).

#include "image/puller.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "gtest/gtest.h"
#include "test/fakes/fake_registry.h"
#include "test/fixtures/image_builder.h"
#include "test/lib/eventually.h"

namespace berth::image {
namespace {

using ::berth::testing::BuildImage;
using ::berth::testing::BuildIndex;
using ::berth::testing::BuiltImage;
using ::berth::testing::Eventually;
using ::berth::testing::FakeRegistry;
using ::berth::testing::LayerBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kHost[] = "127.0.0.1:5000";

class PullerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "unpacking layers as root needs root";
    char tmpl[] = "/tmp/berth-puller-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto db = SqliteDb::Open(root_ + "/berth.db");
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
    auto store = ImageStore::Open(db_.get(), root_, {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    config_.images.registries = {{.prefix = kHost, .insecure = true}};
    puller_ = std::make_unique<ImagePuller>(
        store_.get(), &registry_,
        [this] { return std::make_shared<const config::Config>(config_); }, UnpackLayer);
  }
  void TearDown() override {
    puller_.reset();
    store_.reset();
    db_.reset();
    if (!root_.empty()) std::filesystem::remove_all(root_);
  }

  // Serves `image` as host/repo:tag from the fake registry.
  void Serve(const BuiltImage& image, const std::string& repo, const std::string& tag,
             const std::string& host = kHost) {
    for (const auto& layer : image.layers) registry_.AddBlob(layer.bytes);
    registry_.AddBlob(image.config);
    registry_.AddManifest(host, repo, tag, image.manifest_media_type, image.manifest);
  }

  void ExpectNothingLeft() {
    EXPECT_TRUE(store_->List().empty());
    EXPECT_TRUE(std::filesystem::is_empty(store_->LayersDir()));
    EXPECT_TRUE(std::filesystem::is_empty(root_ + "/tmp"));
  }

  static BuiltImage Image(const std::string& marker, int layers = 2) {
    std::vector<testing::Blob> blobs = {LayerBuilder().File("base", "base layer").Build()};
    for (int i = 1; i < layers; ++i) {
      blobs.push_back(LayerBuilder().File("file" + std::to_string(i), marker).Build());
    }
    return BuildImage(blobs, {.user = "1000", .cmd = {"/bin/sh"}});
  }

  std::string root_;
  std::unique_ptr<SqliteDb> db_;
  std::unique_ptr<ImageStore> store_;
  FakeRegistry registry_;
  config::Config config_;
  std::unique_ptr<ImagePuller> puller_;
};

TEST_F(PullerTest, PullsAndRecordsAnImage) {
  BuiltImage image = Image("one");
  Serve(image, "app", "1.0");
  absl::StatusOr<PullResult> pulled = puller_->Pull("127.0.0.1:5000/app:1.0", std::nullopt);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  const ImageRecord& rec = *pulled->image;
  EXPECT_EQ(rec.id, image.config_digest);
  EXPECT_THAT(rec.repo_tags, ElementsAre("127.0.0.1:5000/app:1.0"));
  EXPECT_THAT(rec.repo_digests, ElementsAre("127.0.0.1:5000/app@" + image.manifest_digest));
  EXPECT_EQ(rec.config.user, "1000");
  EXPECT_GT(rec.size, 0);
  ASSERT_EQ(rec.chain_ids.size(), 2u);
  std::ifstream file(store_->LayerDir(rec.chain_ids[1]) + "/diff/file1");
  std::string content((std::istreambuf_iterator<char>(file)), {});
  EXPECT_EQ(content, "one");
  EXPECT_EQ(pulled->bytes_downloaded,
            static_cast<int64_t>(image.layers[0].bytes.size() + image.layers[1].bytes.size()));
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/tmp"));

  // Again: nothing is downloaded but the manifest and config.
  absl::StatusOr<PullResult> again = puller_->Pull("127.0.0.1:5000/app:1.0", std::nullopt);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->bytes_downloaded, 0);
  EXPECT_EQ(registry_.blob_fetches(image.layers[0].digest), 1);
  // By digest: the digest name is recorded, the tag stays.
  absl::StatusOr<PullResult> by_digest =
      puller_->Pull("127.0.0.1:5000/app@" + image.manifest_digest, std::nullopt);
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  EXPECT_EQ(by_digest->image->id, image.config_digest);
  EXPECT_EQ(store_->List().size(), 1u);
}

TEST_F(PullerTest, PicksThisPlatformFromAnIndex) {
  BuiltImage amd64 = Image("amd64");
  BuiltImage arm64 = BuildImage({LayerBuilder().File("arch", "arm64").Build()},
                                {.architecture = "arm64", .variant = "v8"});
  for (const BuiltImage* image : {&amd64, &arm64}) {
    for (const auto& l : image->layers) registry_.AddBlob(l.bytes);
    registry_.AddBlob(image->config);
    registry_.AddManifest(kHost, "multi", "", image->manifest_media_type, image->manifest);
  }
  auto index = BuildIndex({{&arm64, "linux", "arm64", "v8"}, {&amd64, "linux", "amd64", ""}});
  registry_.AddManifest(kHost, "multi", "latest", index.media_type, index.body);
  absl::StatusOr<PullResult> pulled = puller_->Pull("127.0.0.1:5000/multi", std::nullopt);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->image->id, amd64.config_digest);
  EXPECT_EQ(pulled->image->manifest_digest, amd64.manifest_digest);
  // The repo digest is the index's: what the tag points at.
  EXPECT_THAT(pulled->image->repo_digests, ElementsAre("127.0.0.1:5000/multi@" + index.digest));
  EXPECT_EQ(registry_.blob_fetches(arm64.layers[0].digest), 0);
}

TEST_F(PullerTest, IdenticalConcurrentPullsShareOneDownload) {
  BuiltImage image = Image("shared", 3);
  Serve(image, "app", "latest");
  registry_.HoldBlobs();
  std::vector<absl::StatusOr<PullResult>> results(4, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = puller_->Pull("127.0.0.1:5000/app", std::nullopt); });
  }
  registry_.ReleaseBlobs();
  for (std::thread& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->image->id, image.config_digest);
  }
  for (const auto& layer : image.layers) EXPECT_EQ(registry_.blob_fetches(layer.digest), 1);
}

// kubelet gives up on a pull (its runtime request timeout) and goes: the pull stops with it and
// leaves nothing behind, instead of holding a thread on a stalled registry.
TEST_F(PullerTest, APullNobodyWaitsForStops) {
  BuiltImage image = Image("abandoned");
  Serve(image, "app", "latest");
  registry_.HoldBlobs();
  std::atomic<bool> gone{false};
  absl::StatusOr<PullResult> result = absl::UnknownError("not run");
  std::thread caller([&] {
    result = puller_->Pull("127.0.0.1:5000/app", std::nullopt, [&] { return gone.load(); });
  });
  EXPECT_TRUE(Eventually([&] { return registry_.blob_fetches_total() > 0; }));  // it waits
  gone = true;
  caller.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
  ExpectNothingLeft();
  registry_.ReleaseBlobs();
  EXPECT_TRUE(puller_->Pull("127.0.0.1:5000/app", std::nullopt).ok());
}

TEST_F(PullerTest, APullGoesOnWhileAnotherCallerWaitsForIt) {
  BuiltImage image = Image("shared");
  Serve(image, "app", "latest");
  registry_.HoldBlobs();
  std::atomic<bool> first_gone{false};
  absl::StatusOr<PullResult> first = absl::UnknownError("not run");
  absl::StatusOr<PullResult> second = absl::UnknownError("not run");
  std::thread a([&] {
    first = puller_->Pull("127.0.0.1:5000/app", std::nullopt, [&] { return first_gone.load(); });
  });
  ASSERT_TRUE(Eventually([&] { return registry_.blob_fetches_total() > 0; }));
  std::thread b([&] { second = puller_->Pull("127.0.0.1:5000/app", std::nullopt); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // b has joined a's pull
  first_gone = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  registry_.ReleaseBlobs();
  a.join();
  b.join();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->image->id, image.config_digest);
  EXPECT_TRUE(first.ok()) << first.status();
}

TEST_F(PullerTest, APullPastItsDeadlineStops) {
  config_.images.pull_timeout = std::chrono::seconds(1);
  BuiltImage image = Image("slow");
  Serve(image, "app", "latest");
  registry_.HoldBlobs();
  absl::StatusOr<PullResult> result = puller_->Pull("127.0.0.1:5000/app", std::nullopt);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("images.pull_timeout"));
  ExpectNothingLeft();
  registry_.ReleaseBlobs();
}

TEST_F(PullerTest, ImagesSharingALayerDownloadItOnce) {
  BuiltImage one = Image("one");
  BuiltImage two = Image("two");
  ASSERT_EQ(one.layers[0].digest, two.layers[0].digest);
  Serve(one, "one", "latest");
  Serve(two, "two", "latest");
  registry_.HoldBlobs();
  absl::StatusOr<PullResult> a = absl::UnknownError(""), b = absl::UnknownError("");
  std::thread ta([&] { a = puller_->Pull("127.0.0.1:5000/one", std::nullopt); });
  std::thread tb([&] { b = puller_->Pull("127.0.0.1:5000/two", std::nullopt); });
  registry_.ReleaseBlobs();
  ta.join();
  tb.join();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(registry_.blob_fetches(one.layers[0].digest), 1);
  EXPECT_EQ(store_->List().size(), 2u);
}

TEST_F(PullerTest, DownloadsInParallelUpToTheLimit) {
  config_.images.parallel_downloads = 2;
  BuiltImage image = Image("wide", 5);
  Serve(image, "wide", "latest");
  std::set<std::string> layers;
  for (const auto& l : image.layers) layers.insert(l.digest);
  registry_.HoldBlobs(layers);
  absl::StatusOr<PullResult> pulled = absl::UnknownError("");
  std::thread t([&] { pulled = puller_->Pull("127.0.0.1:5000/wide", std::nullopt); });
  // Two layer downloads wait at the gate at once; never more.
  for (int i = 0; i < 10000 && registry_.blobs_in_flight_max() < 2; ++i) usleep(1000);
  registry_.ReleaseBlobs();
  t.join();
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(registry_.blobs_in_flight_max(), 2);
}

TEST_F(PullerTest, CorruptBlobLeavesNothing) {
  BuiltImage image = Image("corrupt", 3);
  Serve(image, "bad", "latest");
  registry_.CorruptBlob(image.layers[2].digest);
  absl::StatusOr<PullResult> pulled = puller_->Pull("127.0.0.1:5000/bad", std::nullopt);
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(pulled.status().ToString(), HasSubstr("pull 127.0.0.1:5000/bad:latest"));
  ExpectNothingLeft();
}

TEST_F(PullerTest, DiffIdMismatchLeavesNothing) {
  BuiltImage image = Image("liar");
  // The config claims a different uncompressed content for the second layer.
  BuiltImage liar = BuildImage({image.layers[0], LayerBuilder().File("x", "other").Build()});
  liar.layers[1] = image.layers[1];
  nlohmann::json manifest = nlohmann::json::parse(liar.manifest);
  manifest["layers"][1]["digest"] = image.layers[1].digest;
  manifest["layers"][1]["size"] = image.layers[1].bytes.size();
  liar.manifest = manifest.dump();
  Serve(liar, "liar", "latest");
  absl::StatusOr<PullResult> pulled = puller_->Pull("127.0.0.1:5000/liar", std::nullopt);
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(pulled.status().ToString(), HasSubstr("uncompressed digest"));
  ExpectNothingLeft();
}

TEST_F(PullerTest, MirrorsAreTriedInOrderBeforeTheRegistry) {
  config_.images.registries = {{.prefix = "registry.k8s.io",
                                .mirrors = {{.location = "mirror-a:5000", .insecure = true},
                                            {.location = "mirror-b:5000/cache", .insecure = true}}}};
  BuiltImage image = Image("mirrored");
  registry_.FailHost("registry.k8s.io", absl::UnavailableError("must not be contacted"));
  Serve(image, "cache/pause", "3.10", "mirror-b:5000");
  absl::StatusOr<PullResult> pulled = puller_->Pull("registry.k8s.io/pause:3.10", std::nullopt);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_THAT(pulled->image->repo_tags, ElementsAre("registry.k8s.io/pause:3.10"));
  EXPECT_EQ(registry_.manifest_requests(), 2);  // mirror-a said NotFound, mirror-b served
}

TEST_F(PullerTest, LocationRewriteNeverContactsTheRegistry) {
  config_.images.registries = {{.prefix = "gcr.io", .location = "127.0.0.1:5000", .insecure = true}};
  registry_.FailHost("gcr.io", absl::UnavailableError("must not be contacted"));
  absl::StatusOr<PullResult> missing = puller_->Pull("gcr.io/x/y:1", std::nullopt);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().ToString(), HasSubstr("127.0.0.1:5000/x/y"));
  EXPECT_THAT(missing.status().ToString(), ::testing::Not(HasSubstr("must not be contacted")));
  BuiltImage image = Image("rewritten");
  Serve(image, "x/y", "1");
  absl::StatusOr<PullResult> pulled = puller_->Pull("gcr.io/x/y:1", std::nullopt);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_THAT(pulled->image->repo_tags, ElementsAre("gcr.io/x/y:1"));
}

TEST_F(PullerTest, BadReferenceIsInvalidArgument) {
  absl::StatusOr<PullResult> pulled = puller_->Pull("Not A Reference", std::nullopt);
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kInvalidArgument);
  ExpectNothingLeft();
}

}  // namespace
}  // namespace berth::image
