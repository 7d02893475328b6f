#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "image/registry.h"

namespace berth::image {
namespace {

using ::testing::ElementsAre;

Reference Ref(const std::string& text) { return *ParseReference(text); }

TEST(SourcesForTest, WithoutAnEntryTheRegistryItselfVerified) {
  config::ImagesConfig images;
  EXPECT_THAT(SourcesFor(images, Ref("quay.io/a/b:1")),
              ElementsAre(Source{"quay.io", "a/b", false, false}));
  // Docker Hub's API lives under another name than its images.
  EXPECT_THAT(SourcesFor(images, Ref("busybox")),
              ElementsAre(Source{"registry-1.docker.io", "library/busybox", false, false}));
}

TEST(SourcesForTest, PrefixMatchesWholeComponentsAndTheLongestWins) {
  config::ImagesConfig images;
  images.registries = {{.prefix = "registry.k8s.io", .insecure = true},
                       {.prefix = "registry.k8s.io/special", .location = "127.0.0.1:5000/sp"}};
  EXPECT_THAT(SourcesFor(images, Ref("registry.k8s.io/pause:3.10")),
              ElementsAre(Source{"registry.k8s.io", "pause", true, false}));
  EXPECT_THAT(SourcesFor(images, Ref("registry.k8s.io/special/x")),
              ElementsAre(Source{"127.0.0.1:5000", "sp/x", false, false}));
  EXPECT_THAT(SourcesFor(images, Ref("registry.k8s.iox/pause")),
              ElementsAre(Source{"registry.k8s.iox", "pause", false, false}));
  EXPECT_THAT(SourcesFor(images, Ref("registry.k8s.io/specialty")),
              ElementsAre(Source{"registry.k8s.io", "specialty", true, false}));
}

TEST(SourcesForTest, MirrorsComeFirstThenTheRegistry) {
  config::ImagesConfig images;
  images.registries = {{.prefix = "docker.io",
                        .mirrors = {{.location = "127.0.0.1:5000", .insecure = true},
                                    {.location = "mirror.example:443/hub"}}}};
  EXPECT_THAT(SourcesFor(images, Ref("busybox:1.36")),
              ElementsAre(Source{"127.0.0.1:5000", "library/busybox", true, true},
                          Source{"mirror.example:443", "hub/library/busybox", false, true},
                          Source{"registry-1.docker.io", "library/busybox", false, false}));
}

TEST(SourcesForTest, LocationRewritesAndNothingElse) {
  config::ImagesConfig images;
  images.registries = {{.prefix = "gcr.io", .location = "127.0.0.1:5000", .insecure = true},
                       {.prefix = "docker.io/library", .location = "127.0.0.1:5000/lib"}};
  EXPECT_THAT(SourcesFor(images, Ref("gcr.io/google-samples/hello-app:1.0")),
              ElementsAre(Source{"127.0.0.1:5000", "google-samples/hello-app", true, false}));
  EXPECT_THAT(SourcesFor(images, Ref("nginx")),
              ElementsAre(Source{"127.0.0.1:5000", "lib/nginx", false, false}));
}

}  // namespace
}  // namespace berth::image
