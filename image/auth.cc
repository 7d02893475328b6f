// Credentials (CRI AuthConfig, docker/containers auth files) and WWW-Authenticate parsing.

#include "image/auth.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/file_util.h"
#include "image/digest.h"
#include "image/registry.h"
#include "nlohmann/json.hpp"

namespace berth::image {
namespace {

absl::StatusOr<std::pair<std::string, std::string>> DecodeAuth(absl::string_view auth) {
  std::string decoded;
  if (!absl::Base64Unescape(auth, &decoded)) {
    return absl::InvalidArgumentError("auth is not valid base64");
  }
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError("auth does not decode to user:password");
  }
  return std::make_pair(decoded.substr(0, colon), decoded.substr(colon + 1));
}

// Auth file keys name a registry, or a registry and a namespace; docker writes URLs.
std::string NormaliseKey(std::string key) {
  absl::string_view k = key;
  absl::ConsumePrefix(&k, "https://");
  absl::ConsumePrefix(&k, "http://");
  std::string out(k);
  if (absl::StartsWith(out, "index.docker.io/v1") || out == "index.docker.io" ||
      absl::StartsWith(out, "registry-1.docker.io")) {
    return "docker.io";
  }
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

std::vector<AuthChallenge> ParseWwwAuthenticate(absl::string_view header) {
  std::vector<AuthChallenge> out;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < header.size() && (header[i] == ' ' || header[i] == '\t' || header[i] == ',')) ++i;
  };
  auto token = [&] {
    const size_t start = i;
    while (i < header.size() && header[i] != ' ' && header[i] != '=' && header[i] != ',') ++i;
    return absl::AsciiStrToLower(header.substr(start, i - start));
  };
  while (true) {
    skip_space();
    if (i >= header.size()) break;
    AuthChallenge challenge{token(), {}};
    while (true) {
      skip_space();
      const size_t mark = i;
      std::string key = token();
      if (i >= header.size() || header[i] != '=') {  // the next challenge's scheme
        i = mark;
        break;
      }
      ++i;
      std::string value;
      if (i < header.size() && header[i] == '"') {
        for (++i; i < header.size() && header[i] != '"'; ++i) {
          if (header[i] == '\\' && i + 1 < header.size()) ++i;
          value += header[i];
        }
        ++i;
      } else {
        while (i < header.size() && header[i] != ',' && header[i] != ' ') value += header[i++];
      }
      challenge.params[key] = value;
      if (i >= header.size()) break;
    }
    if (!challenge.scheme.empty()) out.push_back(std::move(challenge));
    if (i >= header.size()) break;
  }
  return out;
}

absl::StatusOr<Credentials> CredentialsFromAuthConfig(absl::string_view username,
                                                      absl::string_view password,
                                                      absl::string_view auth,
                                                      absl::string_view identity_token,
                                                      absl::string_view registry_token) {
  Credentials creds{std::string(username), std::string(password), std::string(identity_token),
                    std::string(registry_token)};
  if (!auth.empty()) {
    absl::StatusOr<std::pair<std::string, std::string>> decoded = DecodeAuth(auth);
    if (!decoded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("auth config: ", decoded.status().message()));
    }
    creds.username = decoded->first;
    creds.password = decoded->second;
  }
  return creds;
}

absl::StatusOr<Credentials> CredentialsFromAuthFile(const std::string& path, const Reference& ref) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("auth file ", path, ": not a JSON object"));
  }
  auto auths = j.find("auths");
  if (auths == j.end() || !auths->is_object()) return Credentials{};
  // The most specific key wins: "host/ns/repo" over "host/ns" over "host".
  const std::string name = ref.Name();
  const nlohmann::json* best = nullptr;
  size_t best_len = 0;
  for (const auto& [key, value] : auths->items()) {
    const std::string k = NormaliseKey(key);
    const bool match = name == k || absl::StartsWith(name, k + "/");
    if (match && k.size() >= best_len && value.is_object()) {
      best = &value;
      best_len = k.size();
    }
  }
  if (best == nullptr) return Credentials{};
  auto field = [&](const char* key) {
    auto it = best->find(key);
    return it != best->end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  absl::StatusOr<Credentials> creds = CredentialsFromAuthConfig(
      field("username"), field("password"), field("auth"), field("identitytoken"),
      field("registrytoken"));
  if (!creds.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("auth file ", path, ": ", creds.status().message()));
  }
  return creds;
}

absl::Status MaySendCredentials(absl::string_view url, bool insecure_source,
                                const Credentials& credentials) {
  if (credentials.empty() || insecure_source || absl::StartsWithIgnoreCase(url, "https://")) {
    return absl::OkStatus();
  }
  return absl::UnauthenticatedError(
      absl::StrCat("token service ", url, " is not HTTPS: the credentials are not sent there"));
}

std::string CredentialsFingerprint(const Credentials& c) {
  if (c.empty()) return "anonymous";
  return DigestOf(absl::StrCat(c.username.size(), ":", c.username, c.password.size(), ":",
                               c.password, c.identity_token.size(), ":", c.identity_token,
                               c.registry_token.size(), ":", c.registry_token));
}

std::string RegistryMemory::TokenFor(const std::string& key, int64_t now_unix) const {
  auto it = tokens.find(key);
  return it != tokens.end() && it->second.expires_unix > now_unix ? it->second.header : "";
}

void RegistryMemory::Merge(const RegistryMemory& other, int64_t now_unix) {
  for (const auto& [host, scheme] : other.schemes) {
    if (scheme == "http" || scheme == "https") schemes[host] = scheme;
  }
  for (const auto& [key, token] : other.tokens) tokens[key] = token;
  std::erase_if(tokens, [now_unix](const auto& t) { return t.second.expires_unix <= now_unix; });
}

}  // namespace berth::image
