#include "image/digest.h"

#include <stdlib.h>
#include <unistd.h>

#include "base/file_util.h"
#include "gtest/gtest.h"

namespace berth::image {
namespace {

constexpr char kEmpty[] = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(DigestTest, KnownValues) {
  EXPECT_EQ(DigestOf(""), kEmpty);
  EXPECT_EQ(DigestOf("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 sha;
  sha.Update("a");
  sha.Update("bc");
  EXPECT_EQ(sha.Finish(), DigestOf("abc"));
}

TEST(DigestTest, Validity) {
  EXPECT_TRUE(IsValidDigest(kEmpty));
  EXPECT_FALSE(IsValidDigest("sha512:e3b0"));
  EXPECT_FALSE(IsValidDigest(std::string(kEmpty).substr(0, 70)));
  EXPECT_FALSE(IsValidDigest("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
  EXPECT_EQ(DigestHex(kEmpty).size(), 64u);
}

TEST(DigestTest, OfFile) {
  char path[] = "/tmp/berth-digest-test.XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  ASSERT_TRUE(WriteFileAtomic(path, "abc").ok());
  EXPECT_EQ(*DigestOfFile(path), DigestOf("abc"));
  ::unlink(path);
  EXPECT_EQ(DigestOfFile(path).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace berth::image
