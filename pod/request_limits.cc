#include "pod/request_limits.h"

#include <climits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace berth::pod {

absl::Status CheckLength(absl::string_view field, absl::string_view value, size_t max) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " bytes long, more than the ", max, " allowed"));
  }
  if (value.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, " contains a NUL byte"));
  }
  return absl::OkStatus();
}

absl::Status CheckMetadata(absl::string_view field, const std::map<std::string, std::string>& m) {
  size_t total = 0;
  for (const auto& [key, value] : m) {
    if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " has an empty key"));
    total += key.size() + value.size();
  }
  if (total > kMaxMetadataBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " hold ", total,
                                                   " bytes, more than the ", kMaxMetadataBytes,
                                                   " allowed"));
  }
  return absl::OkStatus();
}

absl::Status CheckConfinedPath(absl::string_view field, absl::string_view path) {
  if (absl::Status s = CheckLength(field, path, PATH_MAX); !s.ok()) return s;
  if (!path.empty() && path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", path, "\" must be relative"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", path, "\" must not leave its directory (\"..\")"));
    }
  }
  return absl::OkStatus();
}

std::map<std::string, std::string> AllowedAnnotations(
    const std::map<std::string, std::string>& requested,
    const std::vector<std::string>& allowed_prefixes) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : requested) {
    for (const std::string& prefix : allowed_prefixes) {
      if (absl::StartsWith(key, prefix)) {
        out.emplace(key, value);
        break;
      }
    }
  }
  return out;
}

}  // namespace berth::pod
