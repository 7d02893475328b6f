// The image service of a running berthd against Debian's docker-registry on loopback.

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/fixtures/image_builder.h"
#include "test/fixtures/registry.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/http.h"

namespace berth::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

size_t CountEntries(const std::string& dir) {
  if (!std::filesystem::exists(dir)) return 0;
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir),
                                           std::filesystem::directory_iterator()));
}

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "berthd runs as root";
    if (!RegistryAvailable()) GTEST_SKIP() << "docker-registry is not installed";
    auto registry = TestRegistry::Start();
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
    image_ = BuildImage({BusyboxLayer().Build(), LayerBuilder().File("etc/app", "v1").Build()},
                        {.user = "1000", .cmd = {"sh"}});
    ASSERT_TRUE(registry_->Push("team/app", "1", image_).ok());
    ASSERT_TRUE(registry_->Push("team/app", "stable", image_).ok());
    const std::string host = registry_->host();
    auto daemon = BerthDaemon::Create(
        {.extra_yaml = absl::StrCat("images:\n  registries:\n",
                                    "    - {prefix: \"", host, "\", insecure: true}\n",
                                    "    - {prefix: registry.k8s.io, location: \"", host,
                                    "\", insecure: true}\n")});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
    ref_ = host + "/team/app:1";
  }

  CriClient& cri() { return daemon_->client(); }
  std::string LayersDir() { return daemon_->root() + "/layers"; }

  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<BerthDaemon> daemon_;
  BuiltImage image_;
  std::string ref_;
};

TEST_F(ImageTest, PullListStatusRemove) {
  absl::StatusOr<std::string> id = cri().PullImage(ref_);
  ASSERT_TRUE(id.ok()) << id.status() << daemon_->Log();
  EXPECT_EQ(*id, image_.config_digest);
  ASSERT_TRUE(cri().PullImage(registry_->host() + "/team/app:stable").ok());

  absl::StatusOr<runtime::v1::ListImagesResponse> list = cri().ListImages();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->images_size(), 1);
  const runtime::v1::Image& image = list->images(0);
  EXPECT_EQ(image.id(), image_.config_digest);
  EXPECT_THAT(image.repo_tags(), UnorderedElementsAre(ref_, registry_->host() + "/team/app:stable"));
  EXPECT_THAT(image.repo_digests(),
              ElementsAre(registry_->host() + "/team/app@" + image_.manifest_digest));
  EXPECT_GT(image.size(), 1000u);
  EXPECT_EQ(image.uid().value(), 1000);

  for (const std::string& name :
       {ref_, image_.config_digest, image_.config_digest.substr(7, 12),
        registry_->host() + "/team/app@" + image_.manifest_digest}) {
    absl::StatusOr<runtime::v1::ImageStatusResponse> status = cri().ImageStatus(name, true);
    ASSERT_TRUE(status.ok()) << name << ": " << status.status();
    ASSERT_TRUE(status->has_image()) << name;
    EXPECT_EQ(status->image().id(), image_.config_digest);
    nlohmann::json info = nlohmann::json::parse(status->info().at("info"));
    EXPECT_EQ(info["imageSpec"]["config"]["User"], "1000");
    EXPECT_EQ(info["chainIDs"].size(), 2u);
  }
  absl::StatusOr<runtime::v1::ImageStatusResponse> unknown = cri().ImageStatus("nothing:here");
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_FALSE(unknown->has_image());

  absl::StatusOr<runtime::v1::ImageFsInfoResponse> fs = cri().ImageFsInfo();
  ASSERT_TRUE(fs.ok()) << fs.status();
  ASSERT_EQ(fs->image_filesystems_size(), 1);
  EXPECT_GT(fs->image_filesystems(0).used_bytes().value(), 1000u);
  EXPECT_GT(fs->image_filesystems(0).inodes_used().value(), 5u);
  EXPECT_EQ(fs->image_filesystems(0).fs_id().mountpoint(), LayersDir());

  // Removing one tag keeps the image; removing by id removes it and its layers.
  ASSERT_TRUE(cri().RemoveImage(ref_).ok());
  list = cri().ListImages();
  ASSERT_EQ(list->images_size(), 1);
  EXPECT_THAT(list->images(0).repo_tags(), ElementsAre(registry_->host() + "/team/app:stable"));
  ASSERT_TRUE(cri().RemoveImage(image_.config_digest).ok());
  EXPECT_EQ(cri().ListImages()->images_size(), 0);
  EXPECT_EQ(CountEntries(LayersDir()), 0u);
  EXPECT_TRUE(cri().RemoveImage(image_.config_digest).ok());  // unknown: OK
}

TEST_F(ImageTest, SecondPullIsServedFromTheStoreAndCounted) {
  ASSERT_TRUE(cri().PullImage(ref_).ok()) << daemon_->Log();
  ASSERT_TRUE(cri().PullImage(ref_).ok());
  absl::StatusOr<HttpResponse> metrics = HttpGet(daemon_->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_image_pulls_total{result="success"} 2)"));
  EXPECT_THAT(metrics->body, HasSubstr("berth_image_pull_duration_seconds_count 2"));
  EXPECT_THAT(metrics->body, HasSubstr("berth_image_pull_bytes_total"));
  EXPECT_THAT(daemon_->Log(), HasSubstr("pulled " + ref_));
  // By stage: each layer downloaded and unpacked once, then found in the store.
  const size_t layers = image_.layers.size();
  EXPECT_THAT(metrics->body, HasSubstr(absl::StrCat(
                                 R"(berth_image_pull_layers_total{result="downloaded"} )", layers)));
  EXPECT_THAT(metrics->body, HasSubstr(absl::StrCat(
                                 R"(berth_image_pull_layers_total{result="reused"} )", layers)));
  EXPECT_THAT(metrics->body,
              HasSubstr(absl::StrCat(
                  R"(berth_image_pull_stage_duration_seconds_count{stage="unpack"} )", layers)));
  EXPECT_THAT(metrics->body,
              HasSubstr(R"(berth_image_pull_stage_duration_seconds_count{stage="resolve"} 2)"));
  EXPECT_THAT(metrics->body, Not(HasSubstr("berth_image_unpacked_bytes_total 0\n")));
}

TEST_F(ImageTest, ImagesSurviveARestart) {
  ASSERT_TRUE(cri().PullImage(ref_).ok()) << daemon_->Log();
  absl::StatusOr<int> stopped = daemon_->Stop();
  ASSERT_TRUE(stopped.ok());
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  absl::StatusOr<runtime::v1::ImageStatusResponse> status = cri().ImageStatus(ref_);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(status->has_image());
  EXPECT_EQ(status->image().id(), image_.config_digest);
}

TEST_F(ImageTest, RewrittenRegistryIsServedFromItsLocation) {
  ASSERT_TRUE(registry_->Push("pause", "3.10", image_).ok());
  absl::StatusOr<std::string> id = cri().PullImage("registry.k8s.io/pause:3.10");
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<runtime::v1::ImageStatusResponse> status =
      cri().ImageStatus("registry.k8s.io/pause:3.10");
  ASSERT_TRUE(status.ok() && status->has_image());
  EXPECT_THAT(status->image().repo_tags(), ElementsAre("registry.k8s.io/pause:3.10"));
}

TEST_F(ImageTest, LayeredIndexedMirroredAndPinnedByDigest) {
  // Three layers (gzip, zstd, uncompressed) with a whiteout and an opaque directory, in an index
  // with an arm64 sibling, pulled by digest through a mirror of another registry name.
  BuiltImage layered = BuildImage(
      {LayerBuilder().Dir("etc").File("etc/old", "1").Dir("data").File("data/a", "a").Build(
           Compression::kGzip),
       LayerBuilder().Whiteout("etc/old").Opaque("data").File("data/b", "b").Build(
           Compression::kZstd),
       LayerBuilder().File("top", "t").Build(Compression::kNone)});
  BuiltImage arm = BuildImage({LayerBuilder().File("arm", "64").Build()},
                              {.architecture = "arm64", .variant = "v8"});
  ASSERT_TRUE(registry_->Push("mirror/team/layered", "", layered).ok());
  ASSERT_TRUE(registry_->Push("mirror/team/layered", "", arm).ok());
  BuiltIndex index = BuildIndex({{&arm, "linux", "arm64", "v8"}, {&layered, "linux", "amd64", ""}});
  ASSERT_TRUE(registry_->PushIndex("mirror/team/layered", "v1", index).ok());
  auto daemon = BerthDaemon::Create(
      {.extra_yaml = absl::StrCat("images: {registries: [{prefix: quay.io, mirrors: [{location: \"",
                                  registry_->host(), "/mirror\", insecure: true}]}]}\n")});
  ASSERT_TRUE(daemon.ok());
  ASSERT_TRUE((*daemon)->Start().ok()) << (*daemon)->Log();
  const std::string ref = "quay.io/team/layered@" + index.digest;
  absl::StatusOr<std::string> id = (*daemon)->client().PullImage(ref);
  ASSERT_TRUE(id.ok()) << id.status() << (*daemon)->Log();
  EXPECT_EQ(*id, layered.config_digest);
  absl::StatusOr<runtime::v1::ImageStatusResponse> status = (*daemon)->client().ImageStatus(ref);
  ASSERT_TRUE(status.ok() && status->has_image());
  EXPECT_THAT(status->image().repo_digests(), ElementsAre(ref));
  EXPECT_EQ(status->image().repo_tags_size(), 0);
  EXPECT_EQ(CountEntries((*daemon)->root() + "/layers"), 3u);
}

TEST_F(ImageTest, BadPullsLeaveNothingBehind) {
  BuiltImage hostile = BuildImage({LayerBuilder().File("ok", "fine").Build(),
                                   LayerBuilder().File("../../../../escaped", "pwned").Build()});
  ASSERT_TRUE(registry_->Push("hostile", "1", hostile).ok());
  BuiltImage corrupt = BuildImage({LayerBuilder().File("big", std::string(100000, 'q')).Build()});
  ASSERT_TRUE(registry_->Push("corrupt", "1", corrupt).ok());
  ASSERT_TRUE(registry_->CorruptBlob(corrupt.layers[0].digest).ok());

  absl::StatusOr<std::string> r = cri().PullImage(registry_->host() + "/hostile:1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().ToString(), HasSubstr("../../../../escaped"));
  r = cri().PullImage(registry_->host() + "/corrupt:1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  r = cri().PullImage(registry_->host() + "/missing:1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  r = cri().PullImage("UPPER/case");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(cri().ListImages()->images_size(), 0);
  EXPECT_EQ(CountEntries(LayersDir()), 0u);
  EXPECT_EQ(CountEntries(daemon_->root() + "/tmp"), 0u);
  EXPECT_FALSE(std::filesystem::exists(daemon_->root() + "/escaped"));
  absl::StatusOr<HttpResponse> metrics = HttpGet(daemon_->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_image_pulls_total{result="failure"} 4)"));
}

TEST_F(ImageTest, CredentialsFromTheRequest) {
  auto secured = TestRegistry::Start({.basic_auth = true});
  ASSERT_TRUE(secured.ok()) << secured.status();
  ASSERT_TRUE((*secured)->Push("private", "1", image_).ok());
  // This daemon has no registries entry for the secured registry: configure one.
  auto daemon = BerthDaemon::Create(
      {.extra_yaml = absl::StrCat("images: {registries: [{prefix: \"", (*secured)->host(),
                                  "\", insecure: true}]}\n")});
  ASSERT_TRUE(daemon.ok());
  ASSERT_TRUE((*daemon)->Start().ok()) << (*daemon)->Log();
  const std::string ref = (*secured)->host() + "/private:1";
  absl::StatusOr<std::string> anonymous = (*daemon)->client().PullImage(ref);
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated);
  runtime::v1::AuthConfig auth;
  auth.set_username("berth");
  auth.set_password("s3cret");
  absl::StatusOr<std::string> id = (*daemon)->client().PullImage(ref, &auth);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, image_.config_digest);
  EXPECT_THAT((*daemon)->Log(), ::testing::Not(HasSubstr("s3cret")));
}

}  // namespace
}  // namespace berth::testing
