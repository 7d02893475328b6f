#include "image/store.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "image/digest.h"
#include "image/reference.h"
#include "nlohmann/json.hpp"
#include "base/logging.h"

namespace berth::image {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS images(
  id TEXT PRIMARY KEY,
  manifest_digest TEXT NOT NULL,
  config TEXT NOT NULL,
  size INTEGER NOT NULL,
  pulled_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS image_names(
  name TEXT PRIMARY KEY,
  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS layers(
  chain_id TEXT PRIMARY KEY,
  diff_id TEXT NOT NULL,
  size INTEGER NOT NULL,
  inodes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS image_layers(
  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  chain_id TEXT NOT NULL REFERENCES layers(chain_id),
  PRIMARY KEY(image_id, position));
)sql";

bool IsHex(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool IsDigestName(absl::string_view name) { return absl::StrContains(name, '@'); }

void SortNames(ImageRecord& image) {
  std::sort(image.repo_tags.begin(), image.repo_tags.end());
  std::sort(image.repo_digests.begin(), image.repo_digests.end());
}

}  // namespace

absl::StatusOr<std::unique_ptr<ImageStore>> ImageStore::Open(SqliteDb* db, std::string root,
                                                             std::vector<std::string> pinned) {
  std::unique_ptr<ImageStore> store(new ImageStore(db, std::move(root), std::move(pinned)));
  RETURN_IF_ERROR(MakeDirs(store->LayersDir(), 0700));
  RETURN_IF_ERROR(db->Exec(kSchema));
  RETURN_IF_ERROR(store->Load());
  RETURN_IF_ERROR(store->CleanUp());
  return store;
}

absl::Status ImageStore::Load() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(SqliteStatement layers,
                   db_->Prepare("SELECT chain_id, diff_id, size, inodes FROM layers"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, layers.Step());
    if (!row) break;
    layers_[layers.Text(0)] = {layers.Text(0), layers.Text(1), layers.Int(2), layers.Int(3)};
  }
  std::map<std::string, ImageRecord> images;
  ASSIGN_OR_RETURN(SqliteStatement rows, db_->Prepare(
      "SELECT id, manifest_digest, config, size, pulled_at FROM images"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, rows.Step());
    if (!row) break;
    ImageRecord& image = images[rows.Text(0)];
    image.id = rows.Text(0);
    image.manifest_digest = rows.Text(1);
    image.config_json = rows.Text(2);
    image.size = rows.Int(3);
    image.pulled_at_ns = rows.Int(4);
    absl::StatusOr<ImageConfig> config = ParseImageConfig(image.config_json);
    if (!config.ok()) {
      return Annotate(config.status(), absl::StrCat("database: image ", image.id));
    }
    image.config = *std::move(config);
  }
  ASSIGN_OR_RETURN(SqliteStatement chain, db_->Prepare(
      "SELECT image_id, chain_id FROM image_layers ORDER BY image_id, position"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, chain.Step());
    if (!row) break;
    images[chain.Text(0)].chain_ids.push_back(chain.Text(1));
  }
  ASSIGN_OR_RETURN(SqliteStatement names, db_->Prepare("SELECT name, image_id FROM image_names"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, names.Step());
    if (!row) break;
    ImageRecord& image = images[names.Text(1)];
    (IsDigestName(names.Text(0)) ? image.repo_digests : image.repo_tags).push_back(names.Text(0));
    names_[names.Text(0)] = names.Text(1);
  }
  for (auto& [id, image] : images) Publish(std::move(image));
  return absl::OkStatus();
}

absl::Status ImageStore::CleanUp() {
  // A pull that was cut off leaves only temporary directories and layer directories no image
  // refers to: both go.
  std::error_code ec;
  std::filesystem::remove_all(root_ + "/tmp", ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", root_, "/tmp: ", ec.message()));
  RETURN_IF_ERROR(MakeDirs(root_ + "/tmp", 0700));
  std::vector<std::string> orphans;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& entry : std::filesystem::directory_iterator(LayersDir(), ec)) {
      const std::string chain_id = absl::StrCat("sha256:", entry.path().filename().string());
      if (!layers_.contains(chain_id)) orphans.push_back(chain_id);
    }
    for (const auto& [chain_id, layer] : layers_) {
      if (!std::filesystem::exists(LayerDir(chain_id))) {
        spdlog::error("image store: layer {} is recorded but missing from {}", chain_id,
                      LayersDir());
      }
    }
  }
  if (!orphans.empty()) {
    spdlog::info("image store: removing {} layer(s) left by an interrupted pull", orphans.size());
  }
  DeleteLayerDirs(orphans);
  return absl::OkStatus();
}

bool ImageStore::IsPinned(const ImageRecord& image) const {
  for (const std::string& pattern : pinned_) {
    for (const std::string& tag : image.repo_tags) {
      if (::fnmatch(pattern.c_str(), tag.c_str(), 0) == 0) return true;
    }
    for (const std::string& digest : image.repo_digests) {
      if (::fnmatch(pattern.c_str(), digest.c_str(), 0) == 0) return true;
    }
  }
  return false;
}

ImagePtr ImageStore::Publish(ImageRecord image) {
  SortNames(image);
  image.pinned = IsPinned(image);
  auto ptr = std::make_shared<const ImageRecord>(std::move(image));
  images_[ptr->id] = ptr;
  return ptr;
}

std::vector<ImagePtr> ImageStore::List() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<ImagePtr> out;
  out.reserve(images_.size());
  for (const auto& [id, image] : images_) out.push_back(image);
  return out;
}

absl::StatusOr<ImagePtr> ImageStore::Resolve(absl::string_view name) const {
  absl::ReaderMutexLock lock(&mu_);
  return ResolveLocked(name);
}

absl::StatusOr<ImagePtr> ImageStore::ResolveLocked(absl::string_view name) const {
  auto by_id = [&](const std::string& id) -> ImagePtr {
    auto it = images_.find(id);
    return it == images_.end() ? nullptr : it->second;
  };
  if (name.empty()) return absl::InvalidArgumentError("image name is empty");
  if (ImagePtr image = by_id(std::string(name))) return image;
  if (name.size() == 64 && IsHex(name)) {
    if (ImagePtr image = by_id(absl::StrCat("sha256:", name))) return image;
  }
  if (auto it = names_.find(std::string(name)); it != names_.end()) return by_id(it->second);
  absl::StatusOr<Reference> ref = ParseReference(name);
  if (ref.ok()) {
    const std::string key = ref->digest.empty() ? ref->TagRef() : ref->DigestRef();
    if (auto it = names_.find(key); it != names_.end()) return by_id(it->second);
  }
  absl::string_view hex = name;
  absl::ConsumePrefix(&hex, "sha256:");
  if (hex.size() >= 3 && IsHex(hex)) {
    ImagePtr found;
    for (auto it = images_.lower_bound(absl::StrCat("sha256:", hex));
         it != images_.end() && absl::StartsWith(DigestHex(it->first), hex); ++it) {
      if (found) {
        return absl::InvalidArgumentError(
            absl::StrCat("image id prefix \"", name, "\" is ambiguous"));
      }
      found = it->second;
    }
    if (found) return found;
  }
  if (!ref.ok() && !LooksLikeImageId(name) && !IsHex(hex)) return ref.status();
  return absl::NotFoundError(absl::StrCat("image \"", name, "\" not found"));
}

std::string ImageStore::LayerDir(absl::string_view chain_id) const {
  return absl::StrCat(LayersDir(), "/", DigestHex(chain_id));
}

absl::StatusOr<std::string> ImageStore::MakeTempDir(absl::string_view purpose) const {
  std::string path = absl::StrCat(root_, "/tmp/", purpose, "-XXXXXX");
  if (::mkdtemp(path.data()) == nullptr) return ErrnoToStatus(errno, absl::StrCat("mkdtemp ", path));
  return path;
}

absl::Status ImageStore::WriteLayerJson(const std::string& dir, const LayerRecord& layer) {
  nlohmann::json j = {{"chain_id", layer.chain_id},
                      {"diff_id", layer.diff_id},
                      {"size", layer.size_bytes},
                      {"inodes", layer.inodes}};
  return WriteFileAtomic(dir + "/layer.json", j.dump(), 0600);
}

absl::StatusOr<LayerRecord> ImageStore::ReadLayer(absl::string_view chain_id) const {
  const std::string path = LayerDir(chain_id) + "/layer.json";
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || j.value("chain_id", "") != chain_id) {
    return absl::NotFoundError(absl::StrCat(path, ": not a complete layer"));
  }
  return LayerRecord{j.value("chain_id", ""), j.value("diff_id", ""), j.value("size", int64_t{0}),
                     j.value("inodes", int64_t{0})};
}

}  // namespace berth::image
