#include "pod/runtime_features.h"

#include "gtest/gtest.h"

namespace berth::pod {
namespace {

// Shaped like `runc features` of runc 1.1 (no idmap) and 1.2 (idmap).
constexpr char kRunc11[] = R"({"ociVersionMin": "1.0.0", "mountOptions": ["bind", "rbind", "ro",
    "rro", "rw"], "linux": {"namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user",
    "uts"]}})";
constexpr char kRunc12[] = R"({"mountOptions": ["rro"], "linux": {"namespaces": ["user"],
    "mountExtensions": {"idmap": {"enabled": true}}}})";

TEST(RuntimeFeaturesTest, RecursiveReadOnlyNeedsRroAndKernel512) {
  EXPECT_TRUE(ParseRuntimeFeatures(kRunc11, "6.18.44-fc").recursive_read_only_mounts);
  EXPECT_TRUE(ParseRuntimeFeatures(kRunc11, "5.12.0").recursive_read_only_mounts);
  EXPECT_FALSE(ParseRuntimeFeatures(kRunc11, "5.11.22").recursive_read_only_mounts);
  EXPECT_FALSE(ParseRuntimeFeatures(kRunc11, "4.19.0").recursive_read_only_mounts);
  EXPECT_FALSE(ParseRuntimeFeatures(R"({"mountOptions": ["ro", "rbind"]})", "6.1.0")
                   .recursive_read_only_mounts);
}

TEST(RuntimeFeaturesTest, IdmappedMountsOnlyWhenReportedEnabled) {
  EXPECT_FALSE(ParseRuntimeFeatures(kRunc11, "6.1.0").idmapped_mounts);
  EXPECT_TRUE(ParseRuntimeFeatures(kRunc12, "6.1.0").idmapped_mounts);
  EXPECT_FALSE(ParseRuntimeFeatures(
                   R"({"linux": {"namespaces": ["user"], "mountExtensions": {"idmap": {}}}})",
                   "6.1.0")
                   .idmapped_mounts);
}

TEST(RuntimeFeaturesTest, GarbageMeansNoFeatures) {
  for (const char* text : {"", "not json", "[]", R"({"mountOptions": "rro"})",
                           R"({"linux": []})", R"({"linux": {"namespaces": "user"}})"}) {
    EXPECT_EQ(ParseRuntimeFeatures(text, "6.1.0"), HandlerFeatures{}) << text;
  }
}

TEST(RuntimeFeatureCacheTest, AMissingRuntimeHasNone) {
  RuntimeFeatureCache cache;
  EXPECT_EQ(cache.Get("/nonexistent/runc"), HandlerFeatures{});
}

}  // namespace
}  // namespace berth::pod
