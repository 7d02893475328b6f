#include "image/reference.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::image {
namespace {

using ::testing::HasSubstr;

const std::string kDigest =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Good {
  std::string text;
  std::string domain, path, tag, digest;
};

void PrintTo(const Good& g, std::ostream* os) { *os << g.text; }

class GoodReferenceTest : public ::testing::TestWithParam<Good> {};

TEST_P(GoodReferenceTest, Normalises) {
  const Good& g = GetParam();
  absl::StatusOr<Reference> ref = ParseReference(g.text);
  ASSERT_TRUE(ref.ok()) << g.text << ": " << ref.status();
  EXPECT_EQ(ref->domain, g.domain) << g.text;
  EXPECT_EQ(ref->path, g.path) << g.text;
  EXPECT_EQ(ref->tag, g.tag) << g.text;
  EXPECT_EQ(ref->digest, g.digest) << g.text;
}

INSTANTIATE_TEST_SUITE_P(
    All, GoodReferenceTest,
    ::testing::Values(
        Good{"busybox", "docker.io", "library/busybox", "latest", ""},
        Good{"busybox:1.36", "docker.io", "library/busybox", "1.36", ""},
        Good{"user/app", "docker.io", "user/app", "latest", ""},
        Good{"docker.io/busybox", "docker.io", "library/busybox", "latest", ""},
        Good{"index.docker.io/busybox", "docker.io", "library/busybox", "latest", ""},
        Good{"docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", ""},
        Good{"registry.k8s.io/pause:3.10", "registry.k8s.io", "pause", "3.10", ""},
        Good{"127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", ""},
        Good{"localhost/x", "localhost", "x", "latest", ""},
        Good{"localhost:5000/x", "localhost:5000", "x", "latest", ""},
        Good{"[::1]:5000/a", "[::1]:5000", "a", "latest", ""},
        Good{"busybox@" + kDigest, "docker.io", "library/busybox", "", kDigest},
        Good{"busybox:1.0@" + kDigest, "docker.io", "library/busybox", "1.0", kDigest},
        Good{"127.0.0.1:5000/x@" + kDigest, "127.0.0.1:5000", "x", "", kDigest},
        Good{"a.b-c/d__e/f.g/h--i:T_a.g-1", "a.b-c", "d__e/f.g/h--i", "T_a.g-1", ""},
        Good{"gcr.io/a---b/c", "gcr.io", "a---b/c", "latest", ""},
        Good{"quay.io/x/y/z/w", "quay.io", "x/y/z/w", "latest", ""},
        Good{"sha256", "docker.io", "library/sha256", "latest", ""}),
    [](const ::testing::TestParamInfo<Good>& info) { return std::to_string(info.index); });

class BadReferenceTest : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(BadReferenceTest, IsRejectedNamingTheReference) {
  const auto& [text, why] = GetParam();
  absl::StatusOr<Reference> ref = ParseReference(text);
  ASSERT_FALSE(ref.ok()) << text;
  EXPECT_EQ(ref.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ref.status().message(), HasSubstr("\"" + text + "\""));
  EXPECT_THAT(ref.status().message(), HasSubstr(why));
}

INSTANTIATE_TEST_SUITE_P(
    All, BadReferenceTest,
    ::testing::Values(
        std::make_pair("", "empty"), std::make_pair(" busybox", "whitespace"),
        std::make_pair("busybox ", "whitespace"), std::make_pair("Busybox", "lowercase"),
        std::make_pair("docker.io/Library/busybox", "lowercase"),
        std::make_pair("busybox@", "digest"), std::make_pair("busybox:", "tag"),
        std::make_pair(":tag", "no repository"), std::make_pair("/x", "component"),
        std::make_pair("x//y", "component"), std::make_pair("x/", "component"),
        std::make_pair("busybox@sha256:abc", "digest"),
        std::make_pair("busybox@sha512:" + std::string(128, 'a'), "digest"),
        std::make_pair("busybox@sha256:" + std::string(64, 'A'), "digest"),
        std::make_pair("busybox:-tag", "tag"), std::make_pair("busybox:" + std::string(129, 'a'), "tag"),
        std::make_pair("a..b", "component"), std::make_pair("a_-b", "component"),
        std::make_pair("-a", "component"), std::make_pair("bad_host.io:x/y", "registry"),
        std::make_pair("host-.io/y", "registry"), std::make_pair(std::string(64, 'a'), "image id"),
        std::make_pair("sha256:" + std::string(64, 'b'), "image id"),
        std::make_pair("x/" + std::string(260, 'a'), "longer than 255")),
    [](const auto& info) { return std::to_string(info.index); });

TEST(ReferenceTest, Forms) {
  absl::StatusOr<Reference> ref = ParseReference("busybox:1.0@" + kDigest);
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->Name(), "docker.io/library/busybox");
  EXPECT_EQ(ref->TagRef(), "docker.io/library/busybox:1.0");
  EXPECT_EQ(ref->DigestRef(), "docker.io/library/busybox@" + kDigest);
  EXPECT_EQ(ref->String(), "docker.io/library/busybox:1.0@" + kDigest);
  EXPECT_EQ(ref->ManifestRef(), kDigest);
  ref = ParseReference("busybox");
  EXPECT_EQ(ref->DigestRef(), "");
  EXPECT_EQ(ref->ManifestRef(), "latest");
  EXPECT_EQ(*ParseReference(ref->String()), *ref);
}

TEST(ReferenceTest, ImageIds) {
  EXPECT_TRUE(LooksLikeImageId(std::string(64, 'a')));
  EXPECT_TRUE(LooksLikeImageId(kDigest));
  EXPECT_FALSE(LooksLikeImageId(std::string(63, 'a')));
  EXPECT_FALSE(LooksLikeImageId(std::string(64, 'g')));
  EXPECT_FALSE(LooksLikeImageId("busybox"));
}

}  // namespace
}  // namespace berth::image
