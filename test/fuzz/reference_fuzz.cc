// Image references as kubelet and crictl pass them. A reference that parses is normalised: its
// string form parses back to the same reference.

#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "image/reference.h"

using berth::image::LooksLikeImageId;
using berth::image::ParseReference;
using berth::image::Reference;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  (void)LooksLikeImageId(text);
  absl::StatusOr<Reference> ref = ParseReference(text);
  if (!ref.ok()) return 0;
  FUZZ_CHECK(!ref->domain.empty() && !ref->path.empty());
  FUZZ_CHECK(!ref->tag.empty() || !ref->digest.empty());
  absl::StatusOr<Reference> again = ParseReference(ref->String());
  if (!again.ok() || !(*again == *ref)) {
    std::fprintf(stderr, "'%s' -> '%s' -> %s\n", std::string(text).c_str(), ref->String().c_str(),
                 again.ok() ? again->String().c_str() : again.status().ToString().c_str());
  }
  FUZZ_CHECK(again.ok() && *again == *ref);
  FUZZ_CHECK(ParseReference(ref->Name()).ok());
  return 0;
}
