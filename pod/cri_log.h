#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace berth::pod {

struct CriLogStreams {
  std::string stdout_data;
  std::string stderr_data;
  bool truncated = false;
};

// Reassembles what a process wrote from a CRI log ("<time> <stream> <F|P> <text>" lines): F
// records end with a newline, P records continue. Each stream keeps at most `max_per_stream`
// bytes. Lines that are not CRI records are skipped.
CriLogStreams ParseCriLog(absl::string_view log, size_t max_per_stream);

// The same from the file at `path`, a chunk at a time: only what is kept is held in memory. A
// missing file holds nothing.
absl::StatusOr<CriLogStreams> ReadCriLog(const std::string& path, size_t max_per_stream);

}  // namespace berth::pod
