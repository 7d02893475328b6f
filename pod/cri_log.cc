#include "pod/cri_log.h"

#include "absl/strings/str_split.h"

namespace berth::pod {

CriLogStreams ParseCriLog(absl::string_view log, size_t max_per_stream) {
  CriLogStreams out;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    // <timestamp> <stream> <tag> <text>
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
    if (parts.size() < 3) continue;
    std::string* target = parts[1] == "stdout"   ? &out.stdout_data
                          : parts[1] == "stderr" ? &out.stderr_data
                                                 : nullptr;
    if (target == nullptr || (parts[2] != "F" && parts[2] != "P")) continue;
    std::string piece(parts.size() == 4 ? parts[3] : absl::string_view());
    if (parts[2] == "F") piece += '\n';
    if (target->size() + piece.size() > max_per_stream) {
      piece.resize(max_per_stream - target->size());
      out.truncated = true;
    }
    target->append(piece);
  }
  return out;
}

}  // namespace berth::pod
