#include "image/manifest.h"

#include <sys/utsname.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "image/digest.h"
#include "nlohmann/json.hpp"

namespace berth::image {

std::string StringField(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

namespace {

using nlohmann::json;

absl::StatusOr<json> ParseJson(absl::string_view body, absl::string_view what) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  }
  return j;
}

std::vector<std::string> StringList(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const json& item : *it) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

std::vector<std::string> ObjectKeys(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_object()) return out;
  for (const auto& [name, value] : it->items()) out.push_back(name);
  return out;
}

absl::StatusOr<Descriptor> ParseDescriptor(const json& j, absl::string_view what) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": not an object"));
  Descriptor d;
  d.media_type = StringField(j, "mediaType");
  d.digest = StringField(j, "digest");
  if (!IsValidDigest(d.digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": digest '", d.digest, "' is not a sha256 digest"));
  }
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": missing or negative size"));
  }
  d.size = size->get<int64_t>();
  if (auto p = j.find("platform"); p != j.end() && p->is_object()) {
    d.platform = {StringField(*p, "os"), StringField(*p, "architecture"),
                  StringField(*p, "variant")};
  }
  return d;
}

bool IsLayerMediaType(absl::string_view t) {
  for (absl::string_view known :
       {"application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}) {
    if (t == known) return true;
  }
  return false;
}

std::string NormalVariant(const Platform& p) {
  if (p.architecture == "arm64" && p.variant.empty()) return "v8";
  return p.variant;
}

}  // namespace

bool IsIndexMediaType(absl::string_view t) { return t == kOciIndex || t == kDockerList; }
bool IsManifestMediaType(absl::string_view t) { return t == kOciManifest || t == kDockerManifest; }

Platform HostPlatform() {
  utsname u{};
  ::uname(&u);
  const absl::string_view machine = u.machine;
  if (machine == "x86_64") return {"linux", "amd64", ""};
  if (machine == "aarch64") return {"linux", "arm64", "v8"};
  if (machine == "armv7l") return {"linux", "arm", "v7"};
  if (machine == "ppc64le") return {"linux", "ppc64le", ""};
  if (machine == "s390x") return {"linux", "s390x", ""};
  if (machine == "riscv64") return {"linux", "riscv64", ""};
  return {"linux", std::string(machine), ""};
}

absl::StatusOr<ImageIndex> ParseIndex(absl::string_view body) {
  auto j = ParseJson(body, "image index");
  if (!j.ok()) return j.status();
  auto manifests = j->find("manifests");
  if (manifests == j->end() || !manifests->is_array()) {
    return absl::InvalidArgumentError("image index: no manifests list");
  }
  ImageIndex index;
  for (size_t i = 0; i < manifests->size(); ++i) {
    auto d = ParseDescriptor((*manifests)[i], absl::StrCat("image index: manifests[", i, "]"));
    if (!d.ok()) return d.status();
    index.manifests.push_back(*std::move(d));
  }
  return index;
}

absl::StatusOr<ImageManifest> ParseManifest(absl::string_view body) {
  auto j = ParseJson(body, "image manifest");
  if (!j.ok()) return j.status();
  ImageManifest m;
  auto config = j->find("config");
  if (config == j->end()) return absl::InvalidArgumentError("image manifest: no config");
  auto d = ParseDescriptor(*config, "image manifest: config");
  if (!d.ok()) return d.status();
  m.config = *std::move(d);
  auto layers = j->find("layers");
  if (layers == j->end() || !layers->is_array()) {
    return absl::InvalidArgumentError("image manifest: no layers list");
  }
  for (size_t i = 0; i < layers->size(); ++i) {
    const std::string what = absl::StrCat("image manifest: layers[", i, "]");
    auto layer = ParseDescriptor((*layers)[i], what);
    if (!layer.ok()) return layer.status();
    if (!IsLayerMediaType(layer->media_type)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unsupported layer media type '", layer->media_type, "'"));
    }
    m.layers.push_back(*std::move(layer));
  }
  return m;
}

absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view body) {
  auto j = ParseJson(body, "image config");
  if (!j.ok()) return j.status();
  ImageConfig c;
  c.platform = {StringField(*j, "os"), StringField(*j, "architecture"),
                StringField(*j, "variant")};
  c.created = StringField(*j, "created");
  if (auto cfg = j->find("config"); cfg != j->end() && cfg->is_object()) {
    c.user = StringField(*cfg, "User");
    c.env = StringList(*cfg, "Env");
    c.entrypoint = StringList(*cfg, "Entrypoint");
    c.cmd = StringList(*cfg, "Cmd");
    c.working_dir = StringField(*cfg, "WorkingDir");
    c.stop_signal = StringField(*cfg, "StopSignal");
    c.exposed_ports = ObjectKeys(*cfg, "ExposedPorts");
    c.volumes = ObjectKeys(*cfg, "Volumes");
    if (auto labels = cfg->find("Labels"); labels != cfg->end() && labels->is_object()) {
      for (const auto& [k, v] : labels->items()) {
        if (v.is_string()) c.labels[k] = v.get<std::string>();
      }
    }
  }
  auto rootfs = j->find("rootfs");
  if (rootfs == j->end() || !rootfs->is_object()) {
    return absl::InvalidArgumentError("image config: no rootfs");
  }
  c.diff_ids = StringList(*rootfs, "diff_ids");
  for (const std::string& d : c.diff_ids) {
    if (!IsValidDigest(d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("image config: rootfs.diff_ids: '", d, "' is not a sha256 digest"));
    }
  }
  return c;
}

absl::StatusOr<Descriptor> SelectPlatform(const ImageIndex& index, const Platform& want) {
  std::vector<std::string> have;
  for (const Descriptor& d : index.manifests) {
    const Platform& p = d.platform;
    have.push_back(absl::StrCat(p.os, "/", p.architecture, p.variant.empty() ? "" : "/",
                                p.variant));
    if (p.os != want.os || p.architecture != want.architecture) continue;
    const std::string v = NormalVariant(p);
    const std::string w = NormalVariant(want);
    if (v.empty() || w.empty() || v == w) return d;
  }
  return absl::NotFoundError(absl::StrCat("no image for ", want.os, "/", want.architecture,
                                          " in the index (it has: ", absl::StrJoin(have, ", "),
                                          ")"));
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> chain;
  for (const std::string& diff : diff_ids) {
    chain.push_back(chain.empty() ? diff : DigestOf(absl::StrCat(chain.back(), " ", diff)));
  }
  return chain;
}

}  // namespace berth::image
