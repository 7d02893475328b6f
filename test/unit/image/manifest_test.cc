#include "image/manifest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "image/digest.h"

namespace berth::image {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kD1 = DigestOf("1");
const std::string kD2 = DigestOf("2");
const std::string kD3 = DigestOf("3");

TEST(ManifestTest, ParsesOciManifest) {
  const std::string body = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" + kD1 +
                           R"(","size":12},
    "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" + kD2 +
                           R"(","size":100},
              {"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":")" + kD3 +
                           R"(","size":200}]})";
  absl::StatusOr<ImageManifest> m = ParseManifest(body);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config.digest, kD1);
  ASSERT_EQ(m->layers.size(), 2u);
  EXPECT_EQ(m->layers[1].size, 200);
}

TEST(ManifestTest, RejectsBadManifests) {
  EXPECT_THAT(ParseManifest("[").status().message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(ParseManifest(R"({"layers":[]})").status().message(), HasSubstr("no config"));
  EXPECT_THAT(ParseManifest(R"({"config":{"digest":"sha256:12","size":1},"layers":[]})")
                  .status()
                  .message(),
              HasSubstr("not a sha256 digest"));
  const std::string foreign = R"({"config":{"digest":")" + kD1 +
                              R"(","size":1},"layers":[{"mediaType":"application/x-foo","digest":")" +
                              kD2 + R"(","size":1}]})";
  EXPECT_THAT(ParseManifest(foreign).status().message(),
              HasSubstr("unsupported layer media type 'application/x-foo'"));
  const std::string negative = R"({"config":{"digest":")" + kD1 + R"(","size":-1},"layers":[]})";
  EXPECT_THAT(ParseManifest(negative).status().message(), HasSubstr("negative size"));
}

TEST(ManifestTest, SelectsPlatformFromIndex) {
  const std::string body = R"({"manifests":[
    {"digest":")" + kD1 + R"(","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
    {"digest":")" + kD2 + R"(","size":1,"platform":{"os":"linux","architecture":"amd64"}},
    {"digest":")" + kD3 + R"(","size":1,"platform":{"os":"windows","architecture":"amd64"}}]})";
  absl::StatusOr<ImageIndex> index = ParseIndex(body);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(SelectPlatform(*index, {"linux", "amd64", ""})->digest, kD2);
  EXPECT_EQ(SelectPlatform(*index, {"linux", "arm64", ""})->digest, kD1);  // "" means v8
  EXPECT_EQ(SelectPlatform(*index, {"windows", "amd64", ""})->digest, kD3);
  absl::StatusOr<Descriptor> none = SelectPlatform(*index, {"linux", "s390x", ""});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("linux/arm64/v8, linux/amd64, windows/amd64"));
}

TEST(ManifestTest, ParsesImageConfig) {
  const std::string body = R"({"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
    "config":{"User":"1000:1000","Env":["PATH=/bin"],"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],
      "WorkingDir":"/w","StopSignal":"SIGQUIT","Labels":{"a":"b"},"ExposedPorts":{"80/tcp":{}},
      "Volumes":{"/data":{}}},
    "rootfs":{"type":"layers","diff_ids":[")" + kD1 + R"("]}})";
  absl::StatusOr<ImageConfig> c = ParseImageConfig(body);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user, "1000:1000");
  EXPECT_THAT(c->env, ElementsAre("PATH=/bin"));
  EXPECT_THAT(c->entrypoint, ElementsAre("/bin/sh"));
  EXPECT_THAT(c->cmd, ElementsAre("-c", "x"));
  EXPECT_EQ(c->working_dir, "/w");
  EXPECT_EQ(c->stop_signal, "SIGQUIT");
  EXPECT_EQ(c->labels.at("a"), "b");
  EXPECT_THAT(c->exposed_ports, ElementsAre("80/tcp"));
  EXPECT_THAT(c->volumes, ElementsAre("/data"));
  EXPECT_THAT(c->diff_ids, ElementsAre(kD1));
  EXPECT_EQ(c->platform.architecture, "amd64");
  EXPECT_FALSE(ParseImageConfig(R"({"config":{}})").ok());
  EXPECT_FALSE(ParseImageConfig(R"({"rootfs":{"diff_ids":["md5:x"]}})").ok());
}

TEST(ManifestTest, ChainIds) {
  std::vector<std::string> chain = ChainIds({kD1, kD2, kD3});
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_EQ(chain[0], kD1);
  EXPECT_EQ(chain[1], DigestOf(kD1 + " " + kD2));
  EXPECT_EQ(chain[2], DigestOf(chain[1] + " " + kD3));
  EXPECT_TRUE(ChainIds({}).empty());
}

}  // namespace
}  // namespace berth::image
