#include "pod/cri_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "base/unique_fd.h"

namespace berth::pod {
namespace {

// One record, "<timestamp> <stream> <F|P> <text>", added to its stream.
void AddRecord(absl::string_view line, size_t max_per_stream, CriLogStreams& out) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
  if (parts.size() < 3) return;
  std::string* target = parts[1] == "stdout"   ? &out.stdout_data
                        : parts[1] == "stderr" ? &out.stderr_data
                                               : nullptr;
  if (target == nullptr || (parts[2] != "F" && parts[2] != "P")) return;
  const absl::string_view text = parts.size() == 4 ? parts[3] : absl::string_view();
  const bool newline = parts[2] == "F";
  const size_t room = max_per_stream - std::min(max_per_stream, target->size());
  const size_t want = text.size() + (newline ? 1 : 0);
  if (want > room) out.truncated = true;
  target->append(text.data(), std::min(text.size(), room));
  if (newline && room > text.size()) target->push_back('\n');
}

}  // namespace

CriLogStreams ParseCriLog(absl::string_view log, size_t max_per_stream) {
  CriLogStreams out;
  for (absl::string_view line : absl::StrSplit(log, '\n')) AddRecord(line, max_per_stream, out);
  return out;
}

absl::StatusOr<CriLogStreams> ReadCriLog(const std::string& path, size_t max_per_stream) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  CriLogStreams out;
  if (!fd.valid()) {
    if (errno == ENOENT) return out;  // nothing was written
    return ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  constexpr size_t kChunk = 64 << 10;
  // A record is far shorter (monitors split long lines); a longer run is skipped to its end.
  constexpr size_t kMaxRecord = 1 << 20;
  std::string carry;
  bool skipping = false;
  char buf[kChunk];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("read ", path));
    if (n == 0) break;
    absl::string_view chunk(buf, static_cast<size_t>(n));
    while (!chunk.empty()) {
      const size_t nl = chunk.find('\n');
      if (nl == absl::string_view::npos) {
        if (!skipping) carry.append(chunk.data(), chunk.size());
        if (carry.size() > kMaxRecord) {
          carry.clear();
          skipping = true;
        }
        break;
      }
      if (!skipping) {
        carry.append(chunk.data(), nl);
        AddRecord(carry, max_per_stream, out);
      }
      carry.clear();
      skipping = false;
      chunk.remove_prefix(nl + 1);
    }
    // Both full: nothing more can be kept. Only once a record was cut, though: streams filled
    // exactly are not truncated unless more follows.
    if (out.truncated && out.stdout_data.size() >= max_per_stream &&
        out.stderr_data.size() >= max_per_stream) {
      break;
    }
  }
  if (!skipping && !carry.empty()) AddRecord(carry, max_per_stream, out);
  return out;
}

}  // namespace berth::pod
