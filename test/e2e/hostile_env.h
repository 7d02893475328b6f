#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "test/fixtures/hostile_registry.h"
#include "test/fixtures/image_builder.h"
#include "test/fixtures/raw_tar.h"
#include "test/lib/berth_daemon.h"

namespace berth::testing {

// The limits the hostile suite runs berthd with (small, so that bombs go off quickly).
inline constexpr int64_t kMaxLayerSize = 4 << 20;
inline constexpr int64_t kMaxImageSize = 6 << 20;
inline constexpr int64_t kMaxLayerEntries = 500;
inline constexpr int64_t kMaxPathDepth = 24;
inline constexpr int kStallSeconds = 2;

// A file tree as lstat and the bytes see it: path -> type, mode, owner, size, links, device,
// mtime, xattr names, content (regular files) or target (symlinks). With `dir_mtimes` false,
// directory mtimes are left out (berthd makes and removes temporary entries in its own tree).
using TreeSnapshot = std::map<std::string, std::string>;
TreeSnapshot Snapshot(const std::string& root, bool dir_mtimes = true,
                      const std::vector<std::string>& skip = {});

// One hostile case: a victim directory outside berthd's root that escapes would land in, a
// HostileRegistry and a berthd configured for it. TearDown checks what every case must leave: the
// victim untouched, berthd alive and answering, nothing new in its root (images the case pulled
// are removed first), and a good image still pulling.
class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // "127.0.0.1:<port>/<repo>:<tag>" (or "@digest" when `reference` starts with "sha256:").
  std::string Ref(const std::string& repo, const std::string& reference = "1") const;
  // Serves an image of these layers under repo:1 and returns its reference.
  std::string ServeImage(const std::string& repo, std::vector<Blob> layers);
  // Serves a manifest as given (tag 1) and returns its reference.
  std::string ServeManifest(
      const std::string& repo, const std::string& body,
      const std::string& media_type = "application/vnd.oci.image.manifest.v1+json");

  // The pull fails with `code` and a message containing `says`; nothing new in berthd's root.
  void ExpectRefused(const std::string& ref, absl::StatusCode code, const std::string& says,
                     const runtime::v1::AuthConfig* auth = nullptr);
  // The pull succeeds; returns the image id.
  std::string ExpectPulled(const std::string& ref, const runtime::v1::AuthConfig* auth = nullptr);

  // The unpacked directory of the layer with chain id `chain_id` (the diff_id for the first).
  std::string LayerDiff(const std::string& chain_id) const;
  // The victim's absolute path without the leading "/", as a path inside a layer.
  std::string VictimInLayer() const { return victim_.substr(1); }
  // "../" enough times to reach "/" from anywhere in berthd's root, then the victim.
  std::string DotDotToVictim() const;

  CriClient& cri() { return daemon_->client(); }

  std::string victim_;  // /tmp/berth-hostile-XXXXXX: victim (file), victimdir/inner
  TreeSnapshot victim_before_;
  std::unique_ptr<HostileRegistry> registry_;
  std::unique_ptr<BerthDaemon> daemon_;
  TreeSnapshot root_before_;
};

// sha256(chain + " " + diff_id): the chain id of a layer over `chain`.
std::string ChainId(const std::string& chain, const std::string& diff_id);

}  // namespace berth::testing
