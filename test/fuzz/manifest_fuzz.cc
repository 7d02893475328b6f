// A registry's JSON documents: the same bytes as an image index, a manifest and an image config.

#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "image/digest.h"
#include "image/manifest.h"

using berth::image::ChainIds;
using berth::image::Descriptor;
using berth::image::HostPlatform;
using berth::image::ImageConfig;
using berth::image::ImageIndex;
using berth::image::ImageManifest;
using berth::image::IsValidDigest;
using berth::image::ParseImageConfig;
using berth::image::ParseIndex;
using berth::image::ParseManifest;
using berth::image::Platform;
using berth::image::SelectPlatform;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view body(reinterpret_cast<const char*>(data), size);
  if (absl::StatusOr<ImageIndex> index = ParseIndex(body); index.ok()) {
    for (const Descriptor& d : index->manifests) {
      FUZZ_CHECK(IsValidDigest(d.digest));
      FUZZ_CHECK(d.size >= 0);
    }
    (void)SelectPlatform(*index, HostPlatform());
    (void)SelectPlatform(*index, Platform{"linux", "arm64", ""});
  }
  if (absl::StatusOr<ImageManifest> manifest = ParseManifest(body); manifest.ok()) {
    FUZZ_CHECK(IsValidDigest(manifest->config.digest));
    for (const Descriptor& d : manifest->layers) {
      FUZZ_CHECK(IsValidDigest(d.digest));
      FUZZ_CHECK(d.size >= 0);
    }
  }
  if (absl::StatusOr<ImageConfig> config = ParseImageConfig(body); config.ok()) {
    for (const std::string& d : config->diff_ids) FUZZ_CHECK(IsValidDigest(d));
    FUZZ_CHECK(ChainIds(config->diff_ids).size() == config->diff_ids.size());
  }
  return 0;
}
