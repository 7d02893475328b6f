#pragma once

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/file_util.h"
#include "image/digest.h"
#include "image/registry.h"

namespace berth::testing {

// An in-memory RegistryClient for unit tests of pulls: manifests per (host, repository,
// reference), blobs by digest, injectable failures, a gate that holds blob downloads, and counters.
// Verifies blobs like the real client (a corrupted blob is DataLoss). Thread-safe.
class FakeRegistry final : public image::RegistryClient {
 public:
  // Stores a manifest under its tag (if any) and its digest; returns the digest.
  std::string AddManifest(const std::string& host, const std::string& repo,
                          const std::string& tag, const std::string& media_type,
                          const std::string& body) {
    const std::string digest = image::DigestOf(body);
    absl::MutexLock lock(&mu_);
    manifests_[Key(host, repo, digest)] = {media_type, digest, body};
    if (!tag.empty()) manifests_[Key(host, repo, tag)] = {media_type, digest, body};
    return digest;
  }

  std::string AddBlob(const std::string& data) {
    const std::string digest = image::DigestOf(data);
    absl::MutexLock lock(&mu_);
    blobs_[digest] = data;
    return digest;
  }

  // The blob is served with other content of the same size.
  void CorruptBlob(const std::string& digest) {
    absl::MutexLock lock(&mu_);
    std::string& data = blobs_[digest];
    for (char& c : data) c = static_cast<char>(c ^ 0x5a);
  }

  // Every request to `host` fails with `status`.
  void FailHost(const std::string& host, absl::Status status) {
    absl::MutexLock lock(&mu_);
    failing_[host] = std::move(status);
  }

  // Blob downloads (of `only` when given) wait until ReleaseBlobs().
  void HoldBlobs(std::set<std::string> only = {}) {
    held_ = std::move(only);
    gate_ = std::make_unique<absl::Notification>();
  }
  void ReleaseBlobs() { gate_->Notify(); }

  int manifest_requests() const { return manifest_requests_; }
  int blob_fetches(const std::string& digest) const {
    absl::MutexLock lock(&mu_);
    auto it = fetches_.find(digest);
    return it == fetches_.end() ? 0 : it->second;
  }
  int blob_fetches_total() const { return blob_fetches_total_; }
  int blobs_in_flight_max() const { return in_flight_max_; }

  absl::StatusOr<Manifest> GetManifest(const image::Source& source, absl::string_view reference,
                                       const image::Credentials&,
                                       const image::StopCheck& = {}) override {
    ++manifest_requests_;
    absl::MutexLock lock(&mu_);
    if (auto f = failing_.find(source.host); f != failing_.end()) return f->second;
    auto it = manifests_.find(Key(source.host, source.repository, std::string(reference)));
    if (it == manifests_.end()) {
      return absl::NotFoundError(absl::StrCat("manifest unknown: ", source.host, "/",
                                              source.repository, ":", reference));
    }
    return it->second;
  }

  absl::Status FetchBlob(const image::Source& source, absl::string_view digest, int64_t size,
                         const std::string& dest_path, const image::Credentials&,
                         const std::function<void(int64_t)>& progress,
                         const image::StopCheck& stop = {}) override {
    ++blob_fetches_total_;
    const int now = ++in_flight_;
    for (int max = in_flight_max_; now > max && !in_flight_max_.compare_exchange_weak(max, now);) {
    }
    if (gate_ && (held_.empty() || held_.contains(std::string(digest)))) {
      // Held like a stalled transfer: the stop check is asked meanwhile, as the real client does.
      while (!gate_->WaitForNotificationWithTimeout(absl::Milliseconds(20))) {
        if (!stop) continue;
        if (absl::Status s = stop(); !s.ok()) {
          --in_flight_;
          return s;
        }
      }
    }
    absl::Status status = Serve(source, std::string(digest), size, dest_path, progress);
    --in_flight_;
    return status;
  }

 private:
  static std::string Key(const std::string& host, const std::string& repo,
                         const std::string& ref) {
    return absl::StrCat(host, "/", repo, "#", ref);
  }

  absl::Status Serve(const image::Source& source, const std::string& digest, int64_t size,
                     const std::string& dest_path, const std::function<void(int64_t)>& progress) {
    std::string data;
    {
      absl::MutexLock lock(&mu_);
      ++fetches_[digest];
      if (auto f = failing_.find(source.host); f != failing_.end()) return f->second;
      auto it = blobs_.find(digest);
      if (it == blobs_.end()) return absl::NotFoundError(absl::StrCat("blob unknown: ", digest));
      data = it->second;
    }
    if (static_cast<int64_t>(data.size()) != size || image::DigestOf(data) != digest) {
      return absl::DataLossError(absl::StrCat("blob ", digest, ": digest mismatch"));
    }
    if (progress) progress(size);
    return WriteFileAtomic(dest_path, data, 0600);
  }

  mutable absl::Mutex mu_;
  std::map<std::string, Manifest> manifests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> blobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> failing_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> fetches_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<absl::Notification> gate_;
  std::set<std::string> held_;
  std::atomic<int> manifest_requests_{0};
  std::atomic<int> blob_fetches_total_{0};
  std::atomic<int> in_flight_{0};
  std::atomic<int> in_flight_max_{0};
};

}  // namespace berth::testing
