#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace berth::conmon {

// What a pod monitor's client (berthd) sends to have one container created: that container's
// conmon command line, as the number of its arguments and each argument, all ended by a NUL. The
// monitor answers with one sync-pipe line ({"pid": N}, or -1 and "message") and closes.
inline constexpr size_t kMaxPodRequest = 256 * 1024;

inline std::string EncodePodRequest(const std::vector<std::string>& argv) {
  std::string out = std::to_string(argv.size());
  out += '\0';
  for (const std::string& a : argv) {
    out += a;
    out += '\0';
  }
  return out;
}

// False while `data` is not (yet) one whole request.
inline bool DecodePodRequest(const std::string& data, std::vector<std::string>* argv) {
  argv->clear();
  size_t at = data.find('\0');
  if (at == std::string::npos || at == 0 || at > 4) return false;
  size_t count = 0;
  for (size_t i = 0; i < at; ++i) {
    if (data[i] < '0' || data[i] > '9') return false;
    count = count * 10 + static_cast<size_t>(data[i] - '0');
  }
  ++at;
  for (size_t i = 0; i < count; ++i) {
    const size_t end = data.find('\0', at);
    if (end == std::string::npos) return false;
    argv->emplace_back(data, at, end - at);
    at = end + 1;
  }
  return count > 0 && at == data.size();
}

}  // namespace berth::conmon
