// Which hosts to ask for an image: images.registries prefixes, mirrors and rewrites.

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "image/registry.h"

namespace berth::image {
namespace {

// The Docker Hub API is not served under the name images use.
std::string ApiHost(const std::string& domain) {
  return domain == "docker.io" ? "registry-1.docker.io" : domain;
}

bool MatchesPrefix(const std::string& name, const std::string& prefix) {
  return name == prefix || absl::StartsWith(name, prefix + "/");
}

// "host[:port][/path]" + the rest of the name -> a source.
Source Located(absl::string_view location, absl::string_view rest, bool insecure, bool mirror) {
  const size_t slash = location.find('/');
  Source source;
  source.host = std::string(location.substr(0, slash));
  std::string repository =
      slash == absl::string_view::npos ? std::string() : std::string(location.substr(slash + 1));
  if (!rest.empty()) {
    if (!repository.empty()) repository += "/";
    absl::StrAppend(&repository, rest);
  }
  source.repository = std::move(repository);
  source.insecure = insecure;
  source.mirror = mirror;
  return source;
}

}  // namespace

std::vector<Source> SourcesFor(const config::ImagesConfig& images, const Reference& ref) {
  const std::string name = ref.Name();
  const config::RegistryConfig* best = nullptr;
  for (const config::RegistryConfig& registry : images.registries) {
    if (MatchesPrefix(name, registry.prefix) &&
        (best == nullptr || registry.prefix.size() > best->prefix.size())) {
      best = &registry;
    }
  }
  if (best == nullptr) return {Source{ApiHost(ref.domain), ref.path, false, false}};
  absl::string_view rest = name;
  rest.remove_prefix(std::min(rest.size(), best->prefix.size()));
  while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  if (!best->location.empty()) return {Located(best->location, rest, best->insecure, false)};
  std::vector<Source> sources;
  for (const config::RegistryMirror& mirror : best->mirrors) {
    sources.push_back(Located(mirror.location, rest, mirror.insecure, true));
  }
  Source own{ApiHost(ref.domain), ref.path, best->insecure, false};
  sources.push_back(own);
  return sources;
}

}  // namespace berth::image
