#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json_fwd.hpp"

namespace berth::image {

// Media types of the OCI image spec and their Docker schema 2 equivalents.
inline constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kDockerList[] = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";

bool IsIndexMediaType(absl::string_view media_type);
bool IsManifestMediaType(absl::string_view media_type);

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
  bool operator==(const Platform&) const = default;
};

// The platform this node runs images for: linux and the Go name of the CPU (amd64, arm64 with
// variant v8, ...).
Platform HostPlatform();

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  Platform platform;  // index entries only
};

struct ImageIndex {
  std::vector<Descriptor> manifests;
};

struct ImageManifest {
  Descriptor config;
  std::vector<Descriptor> layers;
};

// The parts of an image config (OCI image spec "config.json") the runtime uses.
struct ImageConfig {
  Platform platform;
  std::string user;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::string stop_signal;
  std::map<std::string, std::string> labels;
  std::vector<std::string> exposed_ports;
  std::vector<std::string> volumes;
  std::vector<std::string> diff_ids;
  std::string created;  // RFC 3339, may be empty
};

// Parsers: InvalidArgument naming what is wrong (bad JSON, missing or bad digests, a layer media
// type we cannot unpack). `body` is the raw JSON.
// A string field of a JSON object from a registry: "" when missing, not a string, or `j` is not
// an object (never a throw).
std::string StringField(const nlohmann::json& j, const char* key);

absl::StatusOr<ImageIndex> ParseIndex(absl::string_view body);
absl::StatusOr<ImageManifest> ParseManifest(absl::string_view body);
absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view body);

// The index entry for `want`: same os and architecture; the variant must match when both name one
// (arm64 "v8" and "" are the same). NotFound listing the platforms the index has.
absl::StatusOr<Descriptor> SelectPlatform(const ImageIndex& index, const Platform& want);

// OCI chain ids: chain[0] = diff[0], chain[n] = sha256(chain[n-1] + " " + diff[n]).
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

}  // namespace berth::image
