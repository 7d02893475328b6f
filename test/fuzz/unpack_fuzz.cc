// Image layers: the input is a layer blob (tar, gzip or zstd), unpacked as root into a fresh
// directory with small limits. Beside that directory is an empty sentinel directory: no entry may
// create anything outside the layer's directory, there or anywhere else in the temporary root.

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "fuzz_check.h"
#include "image/unpack.h"

namespace fs = std::filesystem;

namespace {

struct Paths {
  fs::path root, blob, layer, sentinel;
};

const Paths& TempPaths() {
  static const Paths* paths = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/berth-unpack-fuzz.XXXXXX";
    FUZZ_CHECK(::mkdtemp(pattern.data()) != nullptr);
    auto* p = new Paths{pattern, fs::path(pattern) / "blob", fs::path(pattern) / "layer",
                        fs::path(pattern) / "sentinel"};
    fs::create_directory(p->sentinel);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(TempPaths().root, ec);
    });
    return p;
  }();
  return *paths;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Paths& p = TempPaths();
  {
    std::ofstream blob(p.blob, std::ios::binary | std::ios::trunc);
    blob.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    FUZZ_CHECK(blob.good());
  }
  fs::create_directory(p.layer);
  std::atomic<int64_t> image_bytes = 0;
  berth::image::UnpackLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_entries = 256;
  limits.max_depth = 32;
  limits.image_bytes = &image_bytes;
  limits.max_image_bytes = 768 << 10;
  absl::StatusOr<berth::image::UnpackResult> result =
      berth::image::UnpackLayer(p.blob.string(), p.layer.string(), limits);
  if (result.ok()) {
    FUZZ_CHECK(result->stream_bytes <= limits.max_bytes);
    FUZZ_CHECK(result->inodes <= limits.max_entries);
  }

  std::set<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(p.root)) {
    names.insert(e.path().filename().string());
  }
  FUZZ_CHECK((names == std::set<std::string>{"blob", "layer", "sentinel"}));
  FUZZ_CHECK(fs::is_empty(p.sentinel));
  FUZZ_CHECK(fs::is_directory(fs::symlink_status(p.layer)));
  std::error_code ec;
  fs::remove_all(p.layer, ec);
  FUZZ_CHECK(!ec);
  return 0;
}
