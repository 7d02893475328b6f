#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace berth::image {

// One challenge of a WWW-Authenticate header: `Bearer realm="...",service="...",scope="..."`.
struct AuthChallenge {
  std::string scheme;  // lower case: "bearer", "basic"
  std::map<std::string, std::string> params;  // keys lower case
};

// Parses a WWW-Authenticate header value (quoted strings with escapes and commas, several
// challenges). Unparseable parts are skipped.
std::vector<AuthChallenge> ParseWwwAuthenticate(absl::string_view header);

}  // namespace berth::image
