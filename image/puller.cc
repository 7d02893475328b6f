#include "image/puller.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/failpoint.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "image/manifest.h"
#include "image/unpack.h"
#include "base/logging.h"

namespace berth::image {
namespace {

// Image configs are kilobytes (a long history makes a few hundred): far more is not a config.
constexpr int64_t kMaxConfigBytes = 8 << 20;
// overlayfs stacks at most 500 lower layers (OVL_MAX_STACK): an image with more can never run, and
// pulling it would only fill the node with layers.
constexpr size_t kMaxLayers = 500;

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) spdlog::warn("pull: remove {}: {}", path, ec.message());
}

// Failures worth trying the next source for: the source does not have the image or cannot be
// reached. A corrupt blob or a bad image is the image's fault, not the source's.
bool TryNextSource(const absl::Status& s) {
  return absl::IsNotFound(s) || absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) ||
         absl::IsUnauthenticated(s) || absl::IsPermissionDenied(s) || absl::IsInternal(s) ||
         absl::IsDataLoss(s);
}

}  // namespace

struct ImagePuller::InFlight {
  absl::Notification done;
  std::atomic<int> followers{0};  // callers waiting for the leader's pull
  absl::StatusOr<PullResult> result = absl::UnknownError("pull did not finish");
};

// One image pull from one source.
struct ImagePuller::Job {
  Source source;
  Credentials credentials;
  std::string name;  // for messages
  std::vector<Descriptor> layers;
  std::vector<std::string> diff_ids;
  std::vector<std::string> chain_ids;
  std::vector<LayerRecord> records;
  int parallel = 1;
  StopCheck stop;
  UnpackLimits limits;                   // of one layer; the image's budget is below
  std::atomic<int64_t> image_bytes{0};  // uncompressed bytes of its layers so far
  std::atomic<int64_t> downloaded{0};
  std::atomic<bool> failed{false};
};

absl::StatusOr<PullResult> ImagePuller::Pull(absl::string_view image,
                                             const std::optional<Credentials>& credentials,
                                             const std::function<bool()>& caller_gone) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(image));
  // A pull joins another only with the same credentials: one without any must not get an image
  // through another's (kubelet's AlwaysPullImages relies on each pull being authorised).
  const std::string key = absl::StrCat(
      ref.String(), " ", credentials ? CredentialsFingerprint(*credentials) : "configured");
  std::shared_ptr<InFlight> flight;
  bool leader = false;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = pulls_.try_emplace(key);
    if (inserted) it->second = std::make_shared<InFlight>();
    flight = it->second;
    leader = inserted;
  }
  if (!leader) {
    spdlog::debug("pull {}: joining the pull in progress", ref.String());
    ++flight->followers;
    while (!flight->done.WaitForNotificationWithTimeout(absl::Milliseconds(200))) {
      if (caller_gone && caller_gone()) {
        --flight->followers;
        return absl::CancelledError(absl::StrCat("pull ", ref.String(), ": the caller went away"));
      }
    }
    --flight->followers;
    if (!flight->result.ok()) return flight->result.status();
    return PullResult{flight->result->image, 0};
  }
  const std::chrono::seconds timeout = config_()->images.pull_timeout;
  const absl::Time deadline = timeout.count() > 0 ? absl::Now() + absl::FromChrono(timeout)
                                                  : absl::InfiniteFuture();
  // The leader's caller leaving stops the pull only when nobody joined it.
  const StopCheck stop = [&]() -> absl::Status {
    if (caller_gone && caller_gone() && flight->followers.load() == 0) {
      return absl::CancelledError("every caller went away");
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("took longer than images.pull_timeout (", timeout.count(), " s)"));
    }
    return absl::OkStatus();
  };
  flight->result = DoPull(ref, credentials, stop);
  {
    absl::MutexLock lock(&mu_);
    pulls_.erase(key);
  }
  flight->done.Notify();
  return flight->result;
}

absl::StatusOr<PullResult> ImagePuller::DoPull(const Reference& ref,
                                               const std::optional<Credentials>& credentials,
                                               const StopCheck& stop) {
  const auto config = config_();
  Credentials creds;
  if (credentials) {
    creds = *credentials;
  } else if (!config->images.auth_file.empty()) {
    absl::StatusOr<Credentials> from_file =
        CredentialsFromAuthFile(config->images.auth_file, ref);
    if (from_file.ok()) {
      creds = *std::move(from_file);
    } else if (!absl::IsNotFound(from_file.status())) {
      return Annotate(from_file.status(), absl::StrCat("pull ", ref.String()));
    }
  }
  const absl::Time start = absl::Now();
  std::vector<std::string> failures;
  const std::vector<Source> sources = SourcesFor(config->images, ref);
  for (size_t i = 0; i < sources.size(); ++i) {
    const Source& source = sources[i];
    absl::StatusOr<PullResult> result = PullFrom(source, ref, creds, stop);
    if (result.ok()) {
      spdlog::info("pulled {} ({}) from {} in {}", ref.String(), result->image->id, source.host,
                   absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1))));
      return result;
    }
    const bool last = i + 1 == sources.size();
    if (last || !TryNextSource(result.status()) || !stop().ok()) {
      std::string message = absl::StrCat("pull ", ref.String(), ": ", result.status().message());
      if (!failures.empty()) {
        absl::StrAppend(&message, " (before that: ", absl::StrJoin(failures, "; "), ")");
      }
      return absl::Status(result.status().code(), message);
    }
    spdlog::warn("pull {}: source {} failed, trying the next: {}", ref.String(), source.host,
                 result.status().message());
    failures.push_back(absl::StrCat(source.host, ": ", result.status().message()));
  }
  return absl::NotFoundError(absl::StrCat("pull ", ref.String(), ": no source configured"));
}

void ImagePuller::Observe(absl::string_view stage, std::chrono::steady_clock::time_point since,
                          int64_t bytes) const {
  if (!observe_) return;
  observe_(stage, std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count(),
           bytes);
}

absl::StatusOr<PullResult> ImagePuller::PullFrom(const Source& source, const Reference& ref,
                                                 const Credentials& credentials,
                                                 const StopCheck& stop) {
  const auto resolving = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(RegistryClient::Manifest top,
                   registry_->GetManifest(source, ref.ManifestRef(), credentials, stop));
  const std::string repo_digest = top.digest;
  RegistryClient::Manifest manifest = top;
  if (IsIndexMediaType(top.media_type)) {
    ASSIGN_OR_RETURN(ImageIndex index, ParseIndex(top.body));
    ASSIGN_OR_RETURN(Descriptor chosen, SelectPlatform(index, HostPlatform()));
    ASSIGN_OR_RETURN(manifest, registry_->GetManifest(source, chosen.digest, credentials, stop));
    if (IsIndexMediaType(manifest.media_type)) {
      return absl::InvalidArgumentError(
          absl::StrCat("image index entry ", chosen.digest,
                       " is an index itself (nested indexes are not supported)"));
    }
  }
  ASSIGN_OR_RETURN(ImageManifest parsed, ParseManifest(manifest.body));
  RETURN_IF_ERROR(Failpoint("image.pull.manifest_fetched"));
  if (parsed.layers.size() > kMaxLayers) {
    return absl::InvalidArgumentError(absl::StrCat("image manifest lists ", parsed.layers.size(),
                                                   " layers: more than the ", kMaxLayers,
                                                   " overlayfs can stack"));
  }

  // The config is small: fetch it whole, verified like any blob.
  if (parsed.config.size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat("image config ", parsed.config.digest, " of ",
                                                   parsed.config.size, " bytes: more than ",
                                                   kMaxConfigBytes, " allowed"));
  }
  ASSIGN_OR_RETURN(std::string tmp, store_->MakeTempDir("config"));
  absl::Cleanup remove_tmp = [&] { RemoveTree(tmp); };
  RETURN_IF_ERROR(registry_->FetchBlob(source, parsed.config.digest, parsed.config.size,
                                       tmp + "/config", credentials, {}, stop));
  ASSIGN_OR_RETURN(std::string config_json, ReadFile(tmp + "/config"));
  ASSIGN_OR_RETURN(ImageConfig config, ParseImageConfig(config_json));
  RETURN_IF_ERROR(Failpoint("image.pull.config_fetched"));
  Observe("resolve", resolving, parsed.config.size);
  if (config.diff_ids.size() != parsed.layers.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image config lists ", config.diff_ids.size(), " layers, the manifest ",
                     parsed.layers.size()));
  }

  auto job = std::make_unique<Job>();
  job->source = source;
  job->credentials = credentials;
  job->name = ref.String();
  job->layers = parsed.layers;
  job->diff_ids = config.diff_ids;
  job->chain_ids = ChainIds(config.diff_ids);
  job->records.resize(parsed.layers.size());
  const std::shared_ptr<const config::Config> settings = config_();
  const config::ImagesConfig& images = settings->images;
  job->parallel = images.parallel_downloads;
  job->stop = stop;
  job->limits.max_bytes = images.max_layer_size;
  job->limits.max_entries = images.max_layer_entries;
  job->limits.max_depth = images.max_path_depth;
  job->limits.image_bytes = &job->image_bytes;
  job->limits.max_image_bytes = images.max_image_size;
  job->limits.stop = stop;  // a long unpack stops too
  ImageStore::Lease lease(store_, job->chain_ids);
  RETURN_IF_ERROR(FetchLayers(*job));
  RETURN_IF_ERROR(Failpoint("image.pull.layers_ready"));

  ImageRecord image;
  image.id = parsed.config.digest;
  image.manifest_digest = manifest.digest;
  image.chain_ids = job->chain_ids;
  image.config_json = std::move(config_json);
  image.config = std::move(config);
  image.size = static_cast<int64_t>(image.config_json.size());
  for (const LayerRecord& layer : job->records) image.size += layer.size_bytes;
  image.pulled_at_ns = absl::ToUnixNanos(absl::Now());
  std::vector<std::string> names = {absl::StrCat(ref.Name(), "@", repo_digest)};
  if (!ref.tag.empty()) names.push_back(ref.TagRef());
  ASSIGN_OR_RETURN(ImagePtr stored, store_->Add(std::move(image), job->records, names));
  return PullResult{std::move(stored), job->downloaded.load()};
}

absl::Status ImagePuller::FetchLayers(Job& job) {
  std::vector<absl::Status> results(job.layers.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < job.layers.size(); i = next++) {
      if (job.failed.load()) return;
      results[i] = FetchLayer(job, i);
      if (!results[i].ok()) job.failed = true;
    }
  };
  const size_t threads =
      std::min(job.layers.size(), static_cast<size_t>(std::max(1, job.parallel)));
  {
    std::vector<std::jthread> pool;
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
  }
  for (const absl::Status& s : results) RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

// Makes layer `index` present, sharing the work with any other pull that needs the same layer.
absl::Status ImagePuller::FetchLayer(Job& job, size_t index) {
  const std::string& chain_id = job.chain_ids[index];
  bool made = false;  // by this pull, below: not a reuse
  for (;;) {
    if (absl::StatusOr<LayerRecord> have = store_->ReadLayer(chain_id); have.ok()) {
      // Present already (or made by another pull): it counts against this image's budget too.
      if (job.image_bytes.fetch_add(have->size_bytes) + have->size_bytes >
          job.limits.max_image_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("image ", job.name, ": larger than images.max_image_size (",
                         job.limits.max_image_bytes, " bytes uncompressed)"));
      }
      if (!made) Observe("reuse", std::chrono::steady_clock::now(), have->size_bytes);
      job.records[index] = *std::move(have);
      return absl::OkStatus();
    }
    std::shared_ptr<InFlight> flight;
    bool leader = false;
    {
      absl::MutexLock lock(&mu_);
      auto [it, inserted] = layers_.try_emplace(chain_id);
      if (inserted) it->second = std::make_shared<InFlight>();
      flight = it->second;
      leader = inserted;
    }
    if (!leader) {
      flight->done.WaitForNotification();
      if (!flight->result.ok()) return flight->result.status();
      continue;  // the other pull made it: read its record
    }
    absl::Status status = MakeLayer(job, index);
    made = status.ok();
    flight->result = status.ok() ? absl::StatusOr<PullResult>(PullResult{}) : status;
    {
      absl::MutexLock lock(&mu_);
      layers_.erase(chain_id);
    }
    flight->done.Notify();
    if (!status.ok()) return status;
  }
}

absl::Status ImagePuller::MakeLayer(Job& job, size_t index) {
  const Descriptor& blob = job.layers[index];
  const std::string& chain_id = job.chain_ids[index];
  ASSIGN_OR_RETURN(std::string tmp, store_->MakeTempDir("layer"));
  absl::Cleanup remove_tmp = [&] { RemoveTree(tmp); };
  const std::string blob_path = tmp + "/blob";
  auto last_log = std::chrono::steady_clock::now();
  auto progress = [&](int64_t bytes) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log < std::chrono::seconds(10)) return;
    last_log = now;
    spdlog::info("pull {}: layer {}: {} of {} MiB", job.name, blob.digest, bytes >> 20,
                 blob.size >> 20);
  };
  const auto downloading = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(registry_->FetchBlob(job.source, blob.digest, blob.size, blob_path,
                                       job.credentials, progress, job.stop));
  Observe("download", downloading, blob.size);
  job.downloaded += blob.size;
  RETURN_IF_ERROR(Failpoint("image.pull.layer_fetched"));
  if (job.stop) RETURN_IF_ERROR(job.stop());
  const std::string layer_dir = tmp + "/layer";
  RETURN_IF_ERROR(MakeDirs(layer_dir + "/diff", 0755));
  const auto unpacking = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(UnpackResult unpacked, unpack_(blob_path, layer_dir + "/diff", job.limits));
  Observe("unpack", unpacking, unpacked.stream_bytes);
  ::unlink(blob_path.c_str());
  if (unpacked.diff_id != job.diff_ids[index]) {
    return absl::DataLossError(absl::StrCat("layer ", blob.digest, ": uncompressed digest ",
                                            unpacked.diff_id, " is not the image config's ",
                                            job.diff_ids[index]));
  }
  LayerRecord record{chain_id, unpacked.diff_id, unpacked.size_bytes, unpacked.inodes};
  RETURN_IF_ERROR(ImageStore::WriteLayerJson(layer_dir, record));
  RETURN_IF_ERROR(Failpoint("image.pull.layer_unpacked"));
  if (::chmod(layer_dir.c_str(), 0700) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chmod ", layer_dir));
  }
  const std::string final_dir = store_->LayerDir(chain_id);
  if (std::rename(layer_dir.c_str(), final_dir.c_str()) != 0 && errno != EEXIST &&
      errno != ENOTEMPTY) {
    return ErrnoToStatus(errno, absl::StrCat("rename ", layer_dir, " to ", final_dir));
  }
  job.records[index] = std::move(record);
  return absl::OkStatus();
}

}  // namespace berth::image
