#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "base/sqlite.h"
#include "image/manifest.h"

namespace berth::image {

// A layer as it lies on disk: <root>/layers/<chain hex>/diff, described by layer.json beside diff/.
struct LayerRecord {
  std::string chain_id;
  std::string diff_id;
  int64_t size_bytes = 0;  // file content bytes
  int64_t inodes = 0;
};

// An image as berth knows it. Plain data; the store hands out shared immutable snapshots.
struct ImageRecord {
  std::string id;  // "sha256:<hex>" of the image config
  std::vector<std::string> repo_tags;     // "docker.io/library/busybox:latest", sorted
  std::vector<std::string> repo_digests;  // "docker.io/library/busybox@sha256:...", sorted
  std::string manifest_digest;            // of the manifest that was unpacked
  std::vector<std::string> chain_ids;     // bottom layer first
  int64_t size = 0;                       // unpacked bytes of every layer plus the config
  std::string config_json;
  ImageConfig config;
  int64_t pulled_at_ns = 0;
  bool pinned = false;
};
using ImagePtr = std::shared_ptr<const ImageRecord>;

struct FsUsage {
  int64_t bytes = 0;
  int64_t inodes = 0;
};

// Images and their layers: metadata in SQLite (the tables images, image_names, layers,
// image_layers of berth.db), layer trees under <root>/layers, temporary work under <root>/tmp.
// Lookups are answered from memory. Every change is one transaction, then published in memory.
// Thread-safe; no I/O other than SQLite happens under its lock.
class ImageStore {
 public:
  // Creates the schema if needed, loads everything, and cleans up what an interrupted pull left:
  // <root>/tmp is emptied and layer directories no image refers to are removed. `pinned` holds
  // fnmatch patterns over repo tags (images.pinned and the pause image).
  static absl::StatusOr<std::unique_ptr<ImageStore>> Open(SqliteDb* db, std::string root,
                                                          std::vector<std::string> pinned);

  std::vector<ImagePtr> List() const;

  // By id ("sha256:<hex>", "<hex>", or a unique hex prefix of at least 3 characters), by
  // repo tag or repo digest in any form ParseReference normalises. NotFound if unknown;
  // InvalidArgument for a malformed name that is not an id either.
  absl::StatusOr<ImagePtr> Resolve(absl::string_view name) const;

  // The directory of a layer (exists once the layer is complete) and a fresh private temporary
  // directory under <root>/tmp (removed at the next start if left behind).
  std::string LayerDir(absl::string_view chain_id) const;
  absl::StatusOr<std::string> MakeTempDir(absl::string_view purpose) const;
  // Reads <layer>/layer.json. NotFound when the layer is not (completely) there.
  absl::StatusOr<LayerRecord> ReadLayer(absl::string_view chain_id) const;
  // Writes the description of an unpacked layer into its (temporary) directory.
  static absl::Status WriteLayerJson(const std::string& dir, const LayerRecord& layer);

  // Records an image whose layers are all in place, and points `names` (repo tags and repo
  // digests) at it, taking them from any image that had them. Returns the stored record.
  absl::StatusOr<ImagePtr> Add(ImageRecord image, const std::vector<LayerRecord>& layers,
                               const std::vector<std::string>& names);

  // Removes one name of an image; the image goes too when it was its last repo tag. Removes
  // the whole image when `name` is empty. Layers no image uses any more (and no lease holds) are
  // deleted from disk.
  absl::Status Remove(const std::string& image_id, const std::string& name);

  // RemoveImage's semantics: an id (or id prefix) removes the image with all its names; a repo
  // tag or repo digest removes that name (and the image with its last tag). Unknown names are OK.
  absl::Status RemoveByName(absl::string_view name);

  // Layers a pull or a container is using: never deleted while leased.
  class Lease {
   public:
    Lease(ImageStore* store, std::vector<std::string> chain_ids);
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

   private:
    ImageStore* store_;
    std::vector<std::string> chain_ids_;
  };

  // Bytes and inodes of every recorded layer.
  FsUsage Usage() const;
  const std::string& root() const { return root_; }
  std::string LayersDir() const { return root_ + "/layers"; }

 private:
  ImageStore(SqliteDb* db, std::string root, std::vector<std::string> pinned)
      : db_(db), root_(std::move(root)), pinned_(std::move(pinned)) {}
  absl::Status Load();
  absl::Status CleanUp();
  bool IsPinned(const ImageRecord& image) const;
  ImagePtr Publish(ImageRecord image) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<ImagePtr> ResolveLocked(absl::string_view name) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The candidates no image (other than `ignored_image`) and no lease uses.
  std::vector<std::string> UnusedLayersLocked(const std::vector<std::string>& candidates,
                                              const std::string& ignored_image) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status ForgetLayers(const std::vector<std::string>& chain_ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status PersistImage(const ImageRecord& image, const std::vector<LayerRecord>& layers,
                            const std::vector<std::string>& names) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeleteLayerDirs(const std::vector<std::string>& chain_ids);

  SqliteDb* const db_;
  const std::string root_;
  const std::vector<std::string> pinned_;

  mutable absl::Mutex mu_;
  std::map<std::string, ImagePtr> images_ ABSL_GUARDED_BY(mu_);        // by id
  std::map<std::string, std::string> names_ ABSL_GUARDED_BY(mu_);      // name -> id
  std::map<std::string, LayerRecord> layers_ ABSL_GUARDED_BY(mu_);     // by chain id
  std::multiset<std::string> leases_ ABSL_GUARDED_BY(mu_);
  // Serialises writers, so that a transaction and its publication are one step; readers only
  // take mu_.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
};

}  // namespace berth::image
