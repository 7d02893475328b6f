// The write side of ImageStore: recording and removing images, layer leases and garbage.

#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/status_macros.h"
#include "image/digest.h"
#include "image/reference.h"
#include "image/store.h"
#include "base/logging.h"

namespace berth::image {
namespace {

bool IsDigestName(absl::string_view name) { return absl::StrContains(name, '@'); }

void EraseName(ImageRecord& image, const std::string& name) {
  auto& list = IsDigestName(name) ? image.repo_digests : image.repo_tags;
  list.erase(std::remove(list.begin(), list.end(), name), list.end());
}

}  // namespace

absl::Status ImageStore::PersistImage(const ImageRecord& image,
                                      const std::vector<LayerRecord>& layers,
                                      const std::vector<std::string>& names) {
  SqliteTransaction tx(*db_);
  RETURN_IF_ERROR(tx.status());
  ASSIGN_OR_RETURN(SqliteStatement upsert, db_->Prepare(
      "INSERT INTO images(id, manifest_digest, config, size, pulled_at) VALUES(?,?,?,?,?) "
      "ON CONFLICT(id) DO UPDATE SET manifest_digest=excluded.manifest_digest, "
      "pulled_at=excluded.pulled_at"));
  RETURN_IF_ERROR(upsert.Bind(1, image.id)
                      .Bind(2, image.manifest_digest)
                      .Bind(3, image.config_json)
                      .Bind(4, image.size)
                      .Bind(5, image.pulled_at_ns)
                      .Run());
  ASSIGN_OR_RETURN(SqliteStatement layer, db_->Prepare(
      "INSERT OR IGNORE INTO layers(chain_id, diff_id, size, inodes) VALUES(?,?,?,?)"));
  for (const LayerRecord& l : layers) {
    layer.Reset();
    RETURN_IF_ERROR(
        layer.Bind(1, l.chain_id).Bind(2, l.diff_id).Bind(3, l.size_bytes).Bind(4, l.inodes).Run());
  }
  ASSIGN_OR_RETURN(SqliteStatement clear,
                   db_->Prepare("DELETE FROM image_layers WHERE image_id = ?"));
  RETURN_IF_ERROR(clear.Bind(1, image.id).Run());
  ASSIGN_OR_RETURN(SqliteStatement position, db_->Prepare(
      "INSERT INTO image_layers(image_id, position, chain_id) VALUES(?,?,?)"));
  for (size_t i = 0; i < image.chain_ids.size(); ++i) {
    position.Reset();
    RETURN_IF_ERROR(position.Bind(1, image.id)
                        .Bind(2, static_cast<int64_t>(i))
                        .Bind(3, image.chain_ids[i])
                        .Run());
  }
  ASSIGN_OR_RETURN(SqliteStatement name, db_->Prepare(
      "INSERT INTO image_names(name, image_id) VALUES(?,?) "
      "ON CONFLICT(name) DO UPDATE SET image_id=excluded.image_id"));
  for (const std::string& n : names) {
    name.Reset();
    RETURN_IF_ERROR(name.Bind(1, n).Bind(2, image.id).Run());
  }
  return tx.Commit();
}

absl::StatusOr<ImagePtr> ImageStore::Add(ImageRecord image, const std::vector<LayerRecord>& layers,
                                         const std::vector<std::string>& names) {
  absl::MutexLock write(&write_mu_);
  std::vector<ImageRecord> losers;  // other images that give up a name
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto it = images_.find(image.id); it != images_.end()) {
      image.repo_tags = it->second->repo_tags;
      image.repo_digests = it->second->repo_digests;
    }
    for (const std::string& name : names) {
      auto& list = IsDigestName(name) ? image.repo_digests : image.repo_tags;
      if (std::find(list.begin(), list.end(), name) == list.end()) list.push_back(name);
      auto holder = names_.find(name);
      if (holder == names_.end() || holder->second == image.id) continue;
      auto loser = std::find_if(losers.begin(), losers.end(),
                                [&](const ImageRecord& r) { return r.id == holder->second; });
      if (loser == losers.end()) {
        losers.push_back(*images_.at(holder->second));
        loser = losers.end() - 1;
      }
      EraseName(*loser, name);
    }
  }
  RETURN_IF_ERROR(Annotate(PersistImage(image, layers, names),
                           absl::StrCat("record image ", image.id)));
  absl::MutexLock lock(&mu_);
  for (const LayerRecord& l : layers) layers_.emplace(l.chain_id, l);
  for (const std::string& name : names) names_[name] = image.id;
  for (ImageRecord& loser : losers) Publish(std::move(loser));
  return Publish(std::move(image));
}

absl::Status ImageStore::Remove(const std::string& image_id, const std::string& name) {
  std::vector<std::string> doomed_layers;
  {
    absl::MutexLock write(&write_mu_);
    ImagePtr image;
    {
      absl::ReaderMutexLock lock(&mu_);
      auto it = images_.find(image_id);
      if (it == images_.end()) return absl::OkStatus();
      image = it->second;
    }
    ImageRecord updated = *image;
    if (!name.empty()) EraseName(updated, name);
    const bool whole = name.empty() || updated.repo_tags.empty();
    if (!whole) {
      {
        absl::MutexLock db_lock(&db_->mu());
        ASSIGN_OR_RETURN(SqliteStatement del,
                         db_->Prepare("DELETE FROM image_names WHERE name = ?"));
        RETURN_IF_ERROR(Annotate(del.Bind(1, name).Run(), absl::StrCat("untag ", name)));
      }
      absl::MutexLock lock(&mu_);
      names_.erase(name);
      Publish(std::move(updated));
      return absl::OkStatus();
    }
    {
      absl::ReaderMutexLock lock(&mu_);
      doomed_layers = UnusedLayersLocked(image->chain_ids, image_id);
    }
    SqliteTransaction tx(*db_);
    RETURN_IF_ERROR(tx.status());
    ASSIGN_OR_RETURN(SqliteStatement del, db_->Prepare("DELETE FROM images WHERE id = ?"));
    RETURN_IF_ERROR(del.Bind(1, image_id).Run());
    ASSIGN_OR_RETURN(SqliteStatement del_layer,
                     db_->Prepare("DELETE FROM layers WHERE chain_id = ?"));
    for (const std::string& chain_id : doomed_layers) {
      del_layer.Reset();
      RETURN_IF_ERROR(del_layer.Bind(1, chain_id).Run());
    }
    RETURN_IF_ERROR(Annotate(tx.Commit(), absl::StrCat("remove image ", image_id)));
    absl::MutexLock lock(&mu_);
    images_.erase(image_id);
    for (const std::string& n : image->repo_tags) names_.erase(n);
    for (const std::string& n : image->repo_digests) names_.erase(n);
    for (const std::string& chain_id : doomed_layers) layers_.erase(chain_id);
  }
  DeleteLayerDirs(doomed_layers);
  return absl::OkStatus();
}

absl::Status ImageStore::RemoveByName(absl::string_view name) {
  absl::StatusOr<ImagePtr> image = Resolve(name);
  if (absl::IsNotFound(image.status())) return absl::OkStatus();
  if (!image.ok()) return image.status();
  std::string which;  // the name the caller used, normalised; "" = the image itself
  if (absl::StatusOr<Reference> ref = ParseReference(name); ref.ok() && !LooksLikeImageId(name)) {
    which = ref->digest.empty() ? ref->TagRef() : ref->DigestRef();
    const auto& names = ref->digest.empty() ? (*image)->repo_tags : (*image)->repo_digests;
    if (std::find(names.begin(), names.end(), which) == names.end()) which.clear();
  }
  return Remove((*image)->id, which);
}

std::vector<std::string> ImageStore::UnusedLayersLocked(
    const std::vector<std::string>& candidates, const std::string& ignored_image) const {
  std::vector<std::string> unused;
  for (const std::string& chain_id : candidates) {
    if (leases_.contains(chain_id)) continue;
    const bool used = std::any_of(images_.begin(), images_.end(), [&](const auto& entry) {
      if (entry.first == ignored_image) return false;
      const auto& chain = entry.second->chain_ids;
      return std::find(chain.begin(), chain.end(), chain_id) != chain.end();
    });
    if (!used && std::find(unused.begin(), unused.end(), chain_id) == unused.end()) {
      unused.push_back(chain_id);
    }
  }
  return unused;
}

void ImageStore::DeleteLayerDirs(const std::vector<std::string>& chain_ids) {
  for (const std::string& chain_id : chain_ids) {
    // Renaming first makes the removal atomic for readers: a layer directory is either complete
    // or absent.
    absl::StatusOr<std::string> trash = MakeTempDir("trash");
    const std::string dir = LayerDir(chain_id);
    if (trash.ok() && std::rename(dir.c_str(), (*trash + "/layer").c_str()) == 0) {
      std::error_code ec;
      std::filesystem::remove_all(*trash, ec);
      if (ec) spdlog::warn("image store: remove {}: {}", *trash, ec.message());
    } else if (errno != ENOENT) {
      spdlog::warn("image store: remove layer {}: {}", dir, std::strerror(errno));
      std::error_code ec;
      if (trash.ok()) std::filesystem::remove_all(*trash, ec);
    } else if (trash.ok()) {
      std::error_code ec;
      std::filesystem::remove_all(*trash, ec);
    }
  }
}

ImageStore::Lease::Lease(ImageStore* store, std::vector<std::string> chain_ids)
    : store_(store), chain_ids_(std::move(chain_ids)) {
  absl::MutexLock lock(&store_->mu_);
  for (const std::string& chain_id : chain_ids_) store_->leases_.insert(chain_id);
}

ImageStore::Lease::~Lease() {
  std::vector<std::string> doomed;
  {
    absl::MutexLock write(&store_->write_mu_);
    std::vector<std::string> recorded;
    {
      absl::MutexLock lock(&store_->mu_);
      for (const std::string& chain_id : chain_ids_) {
        store_->leases_.erase(store_->leases_.find(chain_id));
      }
      // A layer that a failed pull completed but no image recorded is not kept (a failed pull
      // leaves nothing behind), nor one whose last image went while it was leased.
      doomed = store_->UnusedLayersLocked(chain_ids_, "");
      for (const std::string& chain_id : doomed) {
        if (store_->layers_.contains(chain_id)) recorded.push_back(chain_id);
      }
    }
    if (!recorded.empty() && !store_->ForgetLayers(recorded).ok()) {
      return;  // logged; the layers stay recorded and are retried at the next start
    }
  }
  store_->DeleteLayerDirs(doomed);
}

absl::Status ImageStore::ForgetLayers(const std::vector<std::string>& chain_ids) {
  SqliteTransaction tx(*db_);
  absl::Status status = tx.status();
  absl::StatusOr<SqliteStatement> del = db_->Prepare("DELETE FROM layers WHERE chain_id = ?");
  if (status.ok()) status = del.status();
  for (size_t i = 0; status.ok() && i < chain_ids.size(); ++i) {
    del->Reset();
    status = del->Bind(1, chain_ids[i]).Run();
  }
  if (status.ok()) status = tx.Commit();
  if (!status.ok()) {
    spdlog::error("image store: forget layers: {}", status.message());
    return status;
  }
  absl::MutexLock lock(&mu_);
  for (const std::string& chain_id : chain_ids) layers_.erase(chain_id);
  return absl::OkStatus();
}

FsUsage ImageStore::Usage() const {
  absl::ReaderMutexLock lock(&mu_);
  FsUsage usage;
  for (const auto& [chain_id, layer] : layers_) {
    usage.bytes += layer.size_bytes;
    usage.inodes += layer.inodes;
  }
  return usage;
}

}  // namespace berth::image
