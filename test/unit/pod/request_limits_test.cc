#include "pod/request_limits.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

using ::testing::HasSubstr;

TEST(RequestLimitsTest, LengthAndNul) {
  EXPECT_TRUE(CheckLength("metadata.name", std::string(253, 'a'), kMaxNameLength).ok());
  absl::Status s = CheckLength("metadata.name", std::string(254, 'a'), kMaxNameLength);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("metadata.name is 254 bytes long"));
  EXPECT_EQ(CheckLength("x", std::string("a\0b", 3), 10).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RequestLimitsTest, MetadataTotal) {
  std::map<std::string, std::string> m{{"a", std::string(kMaxMetadataBytes - 1, 'v')}};
  EXPECT_TRUE(CheckMetadata("annotations", m).ok());
  m["b"] = "v";
  absl::Status s = CheckMetadata("annotations", m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("annotations hold"));
  EXPECT_EQ(CheckMetadata("labels", {{"", "v"}}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RequestLimitsTest, ConfinedPaths) {
  for (const char* ok : {"", "web/0.log", "a.log", "./a/b..c/..d", "a//b"}) {
    EXPECT_TRUE(CheckConfinedPath("log_path", ok).ok()) << ok;
  }
  for (const char* bad : {"/etc/passwd", "../x.log", "a/../../x", "a/..", ".."}) {
    EXPECT_EQ(CheckConfinedPath("log_path", bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(CheckConfinedPath("log_path", std::string(5000, 'a')).ok());
}

TEST(RequestLimitsTest, OnlyAllowedAnnotationsReachTheSpec) {
  const std::map<std::string, std::string> requested{
      {"io.katacontainers.config.hypervisor.path", "/x"},
      {"org.systemd.property.DeviceAllow", "char-* rwm"},
      {"run.oci.keep_original_groups", "1"}};
  EXPECT_TRUE(AllowedAnnotations(requested, {}).empty());
  std::map<std::string, std::string> allowed =
      AllowedAnnotations(requested, {"io.katacontainers.", "run.oci.keep"});
  EXPECT_EQ(allowed.size(), 2u);
  EXPECT_TRUE(allowed.contains("io.katacontainers.config.hypervisor.path"));
  EXPECT_TRUE(allowed.contains("run.oci.keep_original_groups"));
}

}  // namespace
}  // namespace berth::pod
