#include "image/reference.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "image/digest.h"

namespace berth::image {
namespace {

constexpr absl::string_view kDockerHub = "docker.io";
constexpr size_t kMaxNameLength = 255;

bool IsLowerAlnum(char c) { return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'z'); }

// A path component: lower-case alphanumerics joined by ".", "_", "__" or runs of "-".
bool IsPathComponent(absl::string_view s) {
  if (s.empty() || !IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) return false;
  for (size_t i = 0; i < s.size();) {
    if (IsLowerAlnum(s[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && !IsLowerAlnum(s[j])) ++j;
    const absl::string_view sep = s.substr(i, j - i);
    const bool dashes = std::all_of(sep.begin(), sep.end(), [](char c) { return c == '-'; });
    if (sep != "." && sep != "_" && sep != "__" && !dashes) return false;
    i = j;
  }
  return true;
}

// host[:port], where host is DNS labels (letters, digits, '-') joined by '.', or [IPv6].
bool IsDomain(absl::string_view s) {
  absl::string_view host = s;
  if (absl::StartsWith(s, "[")) {
    const size_t close = s.find(']');
    if (close == absl::string_view::npos || close < 3) return false;
    for (char c : s.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(c) && c != ':' && c != '.') return false;
    }
    host = "";
    s = s.substr(close + 1);
    if (s.empty()) return true;
    if (s.front() != ':') return false;
  } else {
    const size_t colon = s.find(':');
    host = s.substr(0, colon);
    s = colon == absl::string_view::npos ? "" : s.substr(colon);
    for (absl::string_view label : absl::StrSplit(host, '.')) {
      if (label.empty() || label.front() == '-' || label.back() == '-') return false;
      for (char c : label) {
        if (!absl::ascii_isalnum(c) && c != '-') return false;
      }
    }
  }
  if (s.empty()) return true;
  const absl::string_view port = s.substr(1);
  return !port.empty() && port.size() <= 5 &&
         std::all_of(port.begin(), port.end(), [](char c) { return absl::ascii_isdigit(c); });
}

bool IsTag(absl::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  auto word = [](char c) { return absl::ascii_isalnum(c) || c == '_'; };
  if (!word(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

bool IsLowerHex64(absl::string_view s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f'); });
}

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid image reference \"", text, "\": ", why));
}

}  // namespace

std::string Reference::Name() const { return absl::StrCat(domain, "/", path); }

std::string Reference::TagRef() const {
  return tag.empty() ? std::string() : absl::StrCat(Name(), ":", tag);
}

std::string Reference::DigestRef() const {
  return digest.empty() ? std::string() : absl::StrCat(Name(), "@", digest);
}

std::string Reference::String() const {
  std::string out = Name();
  if (!tag.empty()) absl::StrAppend(&out, ":", tag);
  if (!digest.empty()) absl::StrAppend(&out, "@", digest);
  return out;
}

absl::StatusOr<Reference> ParseReference(absl::string_view text) {
  if (text.empty()) return Invalid(text, "empty");
  if (text != absl::StripAsciiWhitespace(text)) return Invalid(text, "surrounding whitespace");
  if (LooksLikeImageId(text)) {
    return Invalid(text, "this is an image id, not a reference");
  }
  Reference ref;
  absl::string_view rest = text;
  if (const size_t at = rest.find('@'); at != absl::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!IsValidDigest(ref.digest)) {
      return Invalid(text, "the digest must be sha256: followed by 64 lower-case hex digits");
    }
  }
  // A ':' after the last '/' starts the tag; one before it belongs to the domain's port.
  const size_t slash = rest.rfind('/');
  const size_t colon = rest.rfind(':');
  if (colon != absl::string_view::npos && (slash == absl::string_view::npos || colon > slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!IsTag(ref.tag)) return Invalid(text, absl::StrCat("invalid tag \"", ref.tag, "\""));
  }
  if (rest.empty()) return Invalid(text, "no repository name");
  // The first component is a registry if it looks like a host: a dot, a port, or localhost.
  const size_t first_slash = rest.find('/');
  const absl::string_view first = rest.substr(0, first_slash);
  std::string path;
  if (first_slash != absl::string_view::npos &&
      (absl::StrContains(first, '.') || absl::StrContains(first, ':') || first == "localhost" ||
       absl::StartsWith(first, "["))) {
    if (!IsDomain(first)) return Invalid(text, absl::StrCat("invalid registry \"", first, "\""));
    ref.domain = std::string(first);
    path = std::string(rest.substr(first_slash + 1));
  } else {
    ref.domain = std::string(kDockerHub);
    path = std::string(rest);
  }
  if (ref.domain == "index.docker.io") ref.domain = std::string(kDockerHub);
  if (ref.domain == kDockerHub && !absl::StrContains(path, '/')) path = "library/" + path;
  for (absl::string_view component : absl::StrSplit(path, '/')) {
    if (!IsPathComponent(component)) {
      if (std::any_of(component.begin(), component.end(),
                      [](char c) { return absl::ascii_isupper(c); })) {
        return Invalid(text, "repository name must be lowercase");
      }
      return Invalid(text, absl::StrCat("invalid repository path component \"", component, "\""));
    }
  }
  ref.path = std::move(path);
  if (ref.Name().size() > kMaxNameLength) {
    return Invalid(text, "repository name is longer than 255 characters");
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

bool LooksLikeImageId(absl::string_view text) {
  absl::string_view hex = text;
  if (absl::StartsWith(hex, "sha256:")) hex.remove_prefix(7);
  return IsLowerHex64(hex);
}

}  // namespace berth::image
