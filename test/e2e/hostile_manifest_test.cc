// Hostile manifests, indexes and configs pulled by a running berthd: digests that do not match,
// JSON that is malformed or wrongly typed, sizes that lie, structures too large or nested. Each
// pull fails with an error naming the problem (or, for the harmless, succeeds); HostileTest checks
// that berthd still serves and that nothing is left.

#include <sys/utsname.h>

#include <functional>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/e2e/hostile_env.h"

namespace berth::testing {
namespace {

using nlohmann::json;
using Code = absl::StatusCode;

constexpr char kRepo[] = "m/case";
constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";

std::string HostArchitecture() {
  utsname u{};
  ::uname(&u);
  const std::string machine = u.machine;
  return machine == "x86_64" ? "amd64" : machine == "aarch64" ? "arm64" : machine;
}

class HostileManifestTest : public HostileTest {
 protected:
  // A good one-layer image; its blobs and manifest (by digest) are served.
  BuiltImage Image(const std::string& content = "x") {
    BuiltImage image = BuildImage({LayerBuilder().File("f", content).Build()});
    registry_->Push(kRepo, "", image);
    return image;
  }
  // Edits the config (a new digest, served) and the manifest's descriptor of it.
  static void EditConfig(BuiltImage& image, const std::function<void(json&)>& edit) {
    json config = json::parse(image.config);
    edit(config);
    image.config = config.dump();
    image.config_digest = Sha256Digest(image.config);
    EditManifest(image, [&](json& m) {
      m["config"]["digest"] = image.config_digest;
      m["config"]["size"] = image.config.size();
    });
  }
  static void EditManifest(BuiltImage& image, const std::function<void(json&)>& edit) {
    json manifest = json::parse(image.manifest);
    edit(manifest);
    image.manifest = manifest.dump();
    image.manifest_digest = Sha256Digest(image.manifest);
  }
  // Serves `image` (blobs, config, manifest under tag 1) and expects the pull to fail.
  void Refused(const BuiltImage& image, Code code, const std::string& says) {
    registry_->Push(kRepo, "1", image);
    ExpectRefused(Ref(kRepo), code, says);
  }
  // A manifest body as given under tag 1; the pull must fail.
  void RefusedBody(const std::string& body, Code code, const std::string& says,
                   const std::string& media_type = kOciManifest) {
    ExpectRefused(ServeManifest(kRepo, body, media_type), code, says);
  }
};

// --- digests, sizes and diff ids

TEST_F(HostileManifestTest, ManifestNotMatchingTheDigestPulledIsRefused) {
  const BuiltImage image = Image();
  const BuiltImage other = BuildImage({LayerBuilder().File("other", "y").Build()});
  registry_->SetManifest(kRepo, other.manifest_digest, kOciManifest, image.manifest);
  ExpectRefused(Ref(kRepo, other.manifest_digest), Code::kInvalidArgument,
                "content has digest " + image.manifest_digest);
}

TEST_F(HostileManifestTest, ConfigNotMatchingItsDigestIsRefused) {
  BuiltImage image = Image();
  std::string tampered = image.config;
  tampered[tampered.size() / 2] ^= 1;
  registry_->Push(kRepo, "1", image);
  registry_->SetBlob(image.config_digest, tampered);
  ExpectRefused(Ref(kRepo), Code::kDataLoss, "digest mismatch");
}

TEST_F(HostileManifestTest, LayerNotMatchingItsDigestIsRefused) {
  BuiltImage image = Image();
  std::string tampered = image.layers[0].bytes;
  tampered[tampered.size() / 2] ^= 0x55;
  registry_->Push(kRepo, "1", image);
  registry_->SetBlob(image.layers[0].digest, tampered);
  ExpectRefused(Ref(kRepo), Code::kDataLoss, "digest mismatch");
}

TEST_F(HostileManifestTest, LayerLargerThanItsDescriptorIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [&](json& m) { m["layers"][0]["size"] = image.layers[0].bytes.size() - 10; });
  Refused(image, Code::kDataLoss, "bytes announced");
}

TEST_F(HostileManifestTest, LayerSmallerThanItsDescriptorIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [&](json& m) { m["layers"][0]["size"] = image.layers[0].bytes.size() + 10; });
  Refused(image, Code::kDataLoss, "the manifest says");
}

TEST_F(HostileManifestTest, DiffIdNotMatchingTheLayerIsRefused) {
  BuiltImage image = Image();
  EditConfig(image, [](json& c) { c["rootfs"]["diff_ids"][0] = Sha256Digest("another layer"); });
  Refused(image, Code::kDataLoss, "is not the image config's");
}

TEST_F(HostileManifestTest, MoreDiffIdsThanLayersIsRefused) {
  BuiltImage image = Image();
  EditConfig(image, [](json& c) { c["rootfs"]["diff_ids"].push_back(Sha256Digest("extra")); });
  Refused(image, Code::kInvalidArgument, "image config lists 2 layers, the manifest 1");
}

// --- media types

TEST_F(HostileManifestTest, UnknownManifestMediaTypeIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["mediaType"] = "application/vnd.evil+json"; });
  RefusedBody(image.manifest, Code::kFailedPrecondition,
              "unsupported media type 'application/vnd.evil+json'", "text/html");
}

TEST_F(HostileManifestTest, UnknownLayerMediaTypeIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["layers"][0]["mediaType"] = "application/x-sh"; });
  Refused(image, Code::kInvalidArgument, "unsupported layer media type 'application/x-sh'");
}

TEST_F(HostileManifestTest, DockerSchema1IsRefused) {
  RefusedBody(R"({"schemaVersion":1,"name":"m/case","tag":"1","fsLayers":[],"history":[]})",
              Code::kFailedPrecondition, "schema 1",
              "application/vnd.docker.distribution.manifest.v1+prettyjws");
}

// --- malformed and wrongly typed JSON

TEST_F(HostileManifestTest, TruncatedManifestJsonIsRefused) {
  const BuiltImage image = Image();
  RefusedBody(image.manifest.substr(0, image.manifest.size() / 2), Code::kInvalidArgument,
              "image manifest: not a JSON object");
}

TEST_F(HostileManifestTest, LayersThatAreNotAListAreRefused) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["layers"] = json::object({{"0", m["layers"][0]}}); });
  Refused(image, Code::kInvalidArgument, "image manifest: no layers list");
}

TEST_F(HostileManifestTest, SizeThatIsAStringIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["layers"][0]["size"] = "1024"; });
  Refused(image, Code::kInvalidArgument, "layers[0]: missing or negative size");
}

TEST_F(HostileManifestTest, NegativeSizeIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["config"]["size"] = -1; });
  Refused(image, Code::kInvalidArgument, "config: missing or negative size");
}

TEST_F(HostileManifestTest, DigestThatIsANumberIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["layers"][0]["digest"] = 12345; });
  Refused(image, Code::kInvalidArgument, "layers[0]: digest '' is not a sha256 digest");
}

TEST_F(HostileManifestTest, DigestWithAPathInItIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["config"]["digest"] = "sha256:../../../../etc/passwd"; });
  Refused(image, Code::kInvalidArgument, "is not a sha256 digest");
}

TEST_F(HostileManifestTest, ConfigThatIsNotJsonIsRefused) {
  BuiltImage image = Image();
  image.config = "#!/bin/sh\nrm -rf /\n";
  image.config_digest = Sha256Digest(image.config);
  EditManifest(image, [&](json& m) {
    m["config"]["digest"] = image.config_digest;
    m["config"]["size"] = image.config.size();
  });
  Refused(image, Code::kInvalidArgument, "image config: not a JSON object");
}

TEST_F(HostileManifestTest, DiffIdsThatAreNotAListAreRefused) {
  BuiltImage image = Image();
  EditConfig(image, [](json& c) { c["rootfs"]["diff_ids"] = c["rootfs"]["diff_ids"][0]; });
  Refused(image, Code::kInvalidArgument, "image config lists 0 layers, the manifest 1");
}

// --- sizes and shapes

TEST_F(HostileManifestTest, ManifestOverTheSizeCapIsRefused) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["annotations"]["padding"] = std::string(5 << 20, 'p'); });
  RefusedBody(image.manifest, Code::kResourceExhausted, "larger than 4194304 bytes");
}

TEST_F(HostileManifestTest, ConfigOverTheSizeCapIsRefusedBeforeDownload) {
  BuiltImage image = Image();
  EditManifest(image, [](json& m) { m["config"]["size"] = 9 << 20; });
  Refused(image, Code::kInvalidArgument, "bytes: more than 8388608 allowed");
  EXPECT_EQ(registry_->CountRequests("/v2/m/case/blobs/"), 0);
}

TEST_F(HostileManifestTest, IndexInsideAnIndexIsRefused) {
  const BuiltImage image = Image();
  const BuiltIndex inner = BuildIndex({{&image, "linux", HostArchitecture(), ""}});
  registry_->PushIndex(kRepo, "", inner);
  json outer = {{"schemaVersion", 2},
                {"mediaType", kOciIndex},
                {"manifests",
                 {{{"mediaType", kOciIndex},
                   {"digest", inner.digest},
                   {"size", inner.body.size()},
                   {"platform", {{"os", "linux"}, {"architecture", HostArchitecture()}}}}}}};
  RefusedBody(outer.dump(), Code::kInvalidArgument,
              "image index entry " + inner.digest + " is an index itself", kOciIndex);
}

TEST_F(HostileManifestTest, IndexWhoseEntryServesTheIndexAgainIsRefused) {
  const BuiltImage image = Image();
  const BuiltIndex index = BuildIndex({{&image, "linux", HostArchitecture(), ""}});
  registry_->PushIndex(kRepo, "1", index);
  // The entry's digest answers with the index itself, as a loop would.
  registry_->SetManifest(kRepo, image.manifest_digest, kOciIndex, index.body);
  ExpectRefused(Ref(kRepo), Code::kInvalidArgument, "content has digest " + index.digest);
}

TEST_F(HostileManifestTest, ImageWithoutLayersIsAnEmptyImage) {
  // OCI allows it (artifacts do it); a container of it gets an empty root filesystem.
  BuiltImage image = BuildImage({});
  registry_->Push(kRepo, "1", image);
  EXPECT_EQ(ExpectPulled(Ref(kRepo)), image.config_digest);
}

TEST_F(HostileManifestTest, AbsurdNumberOfLayersIsRefused) {
  BuiltImage image = Image();
  const json layer = json::parse(image.manifest)["layers"][0];
  const std::string diff_id = image.layers[0].diff_id;
  EditConfig(image,
             [&](json& c) { c["rootfs"]["diff_ids"] = std::vector<std::string>(5000, diff_id); });
  EditManifest(image, [&](json& m) { m["layers"] = std::vector<json>(5000, layer); });
  Refused(image, Code::kInvalidArgument,
          "lists 5000 layers: more than the 500 overlayfs can stack");
}

TEST_F(HostileManifestTest, MalformedReferenceIsRefused) {
  for (const std::string& ref :
       {absl::StrCat(registry_->host(), "/UPPER/case:1"),
        absl::StrCat(registry_->host(), "/m/case@sha256:abc"), std::string(""),
        absl::StrCat(registry_->host(), "/m/../../case:1")}) {
    absl::StatusOr<std::string> pulled = cri().PullImage(ref);
    EXPECT_EQ(pulled.status().code(), Code::kInvalidArgument) << ref << ": " << pulled.status();
  }
  EXPECT_EQ(registry_->CountRequests("/v2/m"), 0);
}

TEST_F(HostileManifestTest, AuthConfigThatDoesNotDecodeIsRefused) {
  Image();
  runtime::v1::AuthConfig auth;
  auth.set_auth("!!not base64!!");
  absl::StatusOr<std::string> pulled = cri().PullImage(Ref(kRepo), &auth);
  EXPECT_EQ(pulled.status().code(), Code::kInvalidArgument) << pulled.status();
  EXPECT_THAT(pulled.status().message(), ::testing::HasSubstr("auth"));
  EXPECT_EQ(registry_->CountRequests("/v2/m"), 0);
}

}  // namespace
}  // namespace berth::testing
