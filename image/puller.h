#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "config/config.h"
#include "image/reference.h"
#include "image/registry.h"
#include "image/store.h"
#include "image/unpack.h"

namespace berth::image {

struct PullResult {
  ImagePtr image;
  int64_t bytes_downloaded = 0;  // 0 when everything was already there
};

// Pulls images into the ImageStore: resolves the reference against images.registries (mirrors,
// rewrites), picks this node's platform from an index, downloads the missing layers in parallel
// (images.parallel_downloads), verifies and unpacks each, and records the image. Identical
// concurrent pulls share one; concurrent pulls of images sharing a layer download it once.
// Thread-safe; holds no lock while talking to a registry.
class ImagePuller {
 public:
  using ConfigSource = std::function<std::shared_ptr<const config::Config>()>;
  // UnpackLayer, or the same through berth-fetch (FetchHelperClient::Unpack).
  using Unpacker = std::function<absl::StatusOr<UnpackResult>(
      const std::string& blob_path, const std::string& dest_dir, const UnpackLimits& limits)>;
  // Told the stages of each pull, for the metrics: "resolve" (manifests and config fetched),
  // then per layer "download" and "unpack" (with the bytes fetched or unpacked), or "reuse" (the
  // layer was there already; no time). Called on the pulling threads; must not block.
  using StageObserver =
      std::function<void(absl::string_view stage, double seconds, int64_t bytes)>;
  ImagePuller(ImageStore* store, RegistryClient* registry, ConfigSource config, Unpacker unpack,
              StageObserver observe = {})
      : store_(store),
        registry_(registry),
        config_(std::move(config)),
        unpack_(std::move(unpack)),
        observe_(std::move(observe)) {}
  ImagePuller(const ImagePuller&) = delete;
  ImagePuller& operator=(const ImagePuller&) = delete;

  // `credentials` from the request win; without them images.auth_file is consulted. Errors:
  // InvalidArgument for a bad reference or an image of more layers than overlayfs can stack (500);
  // NotFound when no source has the image; the registry's and unpacking errors otherwise, prefixed
  // with "pull <reference>". A failed pull leaves nothing behind. `caller_gone` (may be empty)
  // tells when the caller stopped waiting: a pull that no caller waits for any more stops
  // (Cancelled); one past images.pull_timeout does too (DeadlineExceeded).
  absl::StatusOr<PullResult> Pull(absl::string_view image,
                                  const std::optional<Credentials>& credentials,
                                  const std::function<bool()>& caller_gone = {});

 private:
  struct InFlight;
  struct Job;
  absl::StatusOr<PullResult> DoPull(const Reference& ref,
                                    const std::optional<Credentials>& credentials,
                                    const StopCheck& stop);
  absl::StatusOr<PullResult> PullFrom(const Source& source, const Reference& ref,
                                      const Credentials& credentials, const StopCheck& stop);
  absl::Status FetchLayers(Job& job);
  absl::Status FetchLayer(Job& job, size_t index);
  absl::Status MakeLayer(Job& job, size_t index);

  ImageStore* const store_;
  RegistryClient* const registry_;
  const ConfigSource config_;
  const Unpacker unpack_;
  const StageObserver observe_;
  void Observe(absl::string_view stage, std::chrono::steady_clock::time_point since,
               int64_t bytes) const;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<InFlight>> pulls_ ABSL_GUARDED_BY(mu_);   // by reference
  std::map<std::string, std::shared_ptr<InFlight>> layers_ ABSL_GUARDED_BY(mu_);  // by chain id
};

}  // namespace berth::image
