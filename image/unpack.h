#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace berth::image {

struct UnpackResult {
  std::string diff_id;        // "sha256:<hex>" of the uncompressed tar stream
  int64_t size_bytes = 0;     // bytes of regular file content written
  int64_t inodes = 0;         // entries created
};

// Unpacks one layer blob (gzip, zstd or uncompressed tar; detected from the content, not the media
// type) into `dest_dir`, an existing empty directory, as root would: ownership, modes (setuid and
// friends included), mtimes, xattrs, device nodes, fifos, hard links and symlinks are kept. OCI
// whiteouts become overlayfs whiteouts (".wh.x" -> char device 0/0 "x"; ".wh..wh..opq" -> the
// directory gets xattr trusted.overlay.opaque=y).
//
// Safe against hostile layers: every path is resolved beneath `dest_dir` (openat2 RESOLVE_IN_ROOT
// semantics), so no entry, symlink, hard link or "../" can create or modify anything outside it;
// such an entry fails the unpack with InvalidArgument naming the entry. Corrupt or truncated
// archives fail with InvalidArgument too. On failure the caller removes `dest_dir` (its content is
// undefined); nothing outside it was touched. Thread-safe (no chdir, no shared state).
absl::StatusOr<UnpackResult> UnpackLayer(const std::string& blob_path, const std::string& dest_dir);

}  // namespace berth::image
