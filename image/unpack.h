#pragma once

#include <atomic>
#include <functional>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace berth::image {

struct UnpackResult {
  std::string diff_id;        // "sha256:<hex>" of the uncompressed tar stream
  int64_t size_bytes = 0;     // bytes of regular file content written
  int64_t inodes = 0;         // entries created
  int64_t stream_bytes = 0;   // bytes of the uncompressed tar stream
};

// Bounds against layers built to exhaust the node (images.max_* in the configuration).
struct UnpackLimits {
  int64_t max_bytes = int64_t{64} << 30;  // of the uncompressed tar stream
  int64_t max_entries = 2'000'000;
  int64_t max_depth = 512;                // path components, also after following symlinks
  // The image's budget, shared by its layers: every uncompressed byte is added to `image_bytes`
  // and the unpack fails once it passes `max_image_bytes`. Unused when null.
  std::atomic<int64_t>* image_bytes = nullptr;
  int64_t max_image_bytes = 0;
  // Asked every few MiB of the uncompressed stream; an error ends the unpack with that error (a
  // pull whose callers went away, or past its deadline). Unused when empty.
  std::function<absl::Status()> stop;
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
//
// A layer over a limit fails with ResourceExhausted naming it. Sparse files stay sparse.
absl::StatusOr<UnpackResult> UnpackLayer(const std::string& blob_path, const std::string& dest_dir,
                                         const UnpackLimits& limits = {});

}  // namespace berth::image
