#pragma once

// Bounds on what a CRI request may carry. kubelet only sends what the apiserver validated (names
// of at most 253 characters, labels and annotations of at most 256 KiB together); a client that
// talks to the socket directly gets the same bounds, so no request can make berth store, log or
// write into specs and files more than that.

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace berth::pod {

inline constexpr size_t kMaxNameLength = 253;            // a DNS subdomain, as pod names are
inline constexpr size_t kMaxMetadataBytes = 256 << 10;   // the apiserver's annotation limit

// `value` (the request field `field`) has at most `max` bytes and no NUL.
absl::Status CheckLength(absl::string_view field, absl::string_view value, size_t max);

// Labels or annotations: keys and values together within kMaxMetadataBytes, no empty key.
absl::Status CheckMetadata(absl::string_view field, const std::map<std::string, std::string>& m);

// A path that must stay beneath the directory it is relative to: not absolute, no ".."
// component, no NUL, at most PATH_MAX bytes.
absl::Status CheckConfinedPath(absl::string_view field, absl::string_view path);

// The annotations of a request that may reach an OCI spec: those whose key starts with one of
// `allowed_prefixes` (a runtime handler's allowed_annotations).
std::map<std::string, std::string> AllowedAnnotations(
    const std::map<std::string, std::string>& requested,
    const std::vector<std::string>& allowed_prefixes);

}  // namespace berth::pod
