#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth::image {

// An image reference normalised the way kubelet, crictl and docker do it:
//   busybox                      -> docker.io/library/busybox:latest
//   user/app:1.0                 -> docker.io/user/app:1.0
//   127.0.0.1:5000/x/y@sha256:.. -> domain 127.0.0.1:5000, path x/y, digest only
//   name:tag@sha256:...          -> both kept; the digest is what gets pulled
// Plain data, copyable.
struct Reference {
  std::string domain;  // "docker.io", "registry.k8s.io", "127.0.0.1:5000", "localhost"
  std::string path;    // repository path inside the registry: "library/busybox"
  std::string tag;     // "" when a digest was given without a tag
  std::string digest;  // "sha256:<64 hex>" or ""

  // domain/path
  std::string Name() const;
  // domain/path:tag ("" without a tag)
  std::string TagRef() const;
  // domain/path@digest ("" without a digest)
  std::string DigestRef() const;
  // The full normalised form: domain/path[:tag][@digest]
  std::string String() const;
  // What to ask the registry for: the digest if there is one, else the tag.
  std::string ManifestRef() const { return digest.empty() ? tag : digest; }

  bool operator==(const Reference&) const = default;
};

// Parses and normalises. InvalidArgument naming the reference (and what is wrong with it) for an
// empty string, upper case in the path, a bad tag, a bad or non-sha256 digest, a bad domain.
absl::StatusOr<Reference> ParseReference(absl::string_view text);

// Whether `text` is an image id as CRI clients pass it: 64 hex digits, optionally "sha256:"-prefixed,
// or a unique prefix is not supported here (the store resolves prefixes).
bool LooksLikeImageId(absl::string_view text);

}  // namespace berth::image
