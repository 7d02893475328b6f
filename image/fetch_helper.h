#pragma once

// berth-fetch: the registry client (libcurl) and the layer unpacker (libarchive) in a process of
// their own, one per request. berthd then maps neither library nor the forty it brings (TLS,
// Kerberos, LDAP, ICU, compressors): about 8 MiB of its RSS. And what a registry or a layer sends
// is parsed outside berthd's address space, so a flaw there ends that helper, not the daemon.
//
// The protocol, private to the two sides: berthd writes one JSON request to the helper's stdin and
// closes it. The helper writes JSON lines to stdout: any number of {"progress": {...}}, then one
// {"status": {"code": N, "message": "..."}, "result": {...}}, and exits. Its stderr is berthd's (its
// log lines go where berthd's go). It dies with the thread that started it (PR_SET_PDEATHSIG).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "image/registry.h"
#include "image/unpack.h"
#include "nlohmann/json.hpp"

namespace berth::image {

// RegistryClient and UnpackLayer through berth-fetch. Thread-safe: every call has its own helper.
// A stop check that says stop, or a layer past the image's budget, kills the helper at once; the
// call then fails as the in-process one would and leaves no file behind. A helper that cannot
// start, dies or answers nonsense fails the call with Internal naming it.
class FetchHelperClient final : public RegistryClient {
 public:
  struct Options {
    std::string path;  // berth-fetch
    std::chrono::seconds stall_timeout{30};
  };
  explicit FetchHelperClient(Options options) : options_(std::move(options)) {}

  absl::StatusOr<Manifest> GetManifest(const Source& source, absl::string_view reference,
                                       const Credentials& credentials,
                                       const StopCheck& stop = {}) override;
  absl::Status FetchBlob(const Source& source, absl::string_view digest, int64_t size,
                         const std::string& dest_path, const Credentials& credentials,
                         const std::function<void(int64_t)>& progress,
                         const StopCheck& stop = {}) override;

  // UnpackLayer in the helper, with the same limits, errors and result. `limits.image_bytes` is
  // kept up to date while the helper runs (every few MiB), and `limits.stop` is asked.
  absl::StatusOr<UnpackResult> Unpack(const std::string& blob_path, const std::string& dest_dir,
                                      const UnpackLimits& limits);

  // Each helper is given what the earlier ones learnt (tokens, which hosts speak plain HTTP) and
  // hands back what it learnt in turn, so that a pull does not fetch a token per blob.
  RegistryMemory Remembered() const override;
  void Remember(const RegistryMemory& memory) override;

 private:
  // Runs one request to its answer's result. `on_progress` may end the request with an error.
  absl::StatusOr<nlohmann::json> Run(const nlohmann::json& request,
                                     const std::function<absl::Status(const nlohmann::json&)>&
                                         on_progress,
                                     const StopCheck& stop);

  const Options options_;
  mutable absl::Mutex mu_;
  RegistryMemory memory_ ABSL_GUARDED_BY(mu_);
};

// The environment variable that gives berth-fetch its parent's pid: if that is not its parent
// any more once it has asked to die with it, it ends at once.
inline constexpr char kFetchParentEnv[] = "BERTH_FETCH_PARENT";

// The helper's side: answers `request` (parsed from stdin), writing progress lines and the answer
// with `write_line`. `registry` and `unpack` do the work (CurlRegistryClient, UnpackLayer).
using UnpackFunction = std::function<absl::StatusOr<UnpackResult>(
    const std::string& blob_path, const std::string& dest_dir, const UnpackLimits& limits)>;
void ServeFetchRequest(const nlohmann::json& request,
                       const std::function<RegistryClient*(std::chrono::seconds)>& registry,
                       const UnpackFunction& unpack,
                       const std::function<void(const nlohmann::json&)>& write_line);

}  // namespace berth::image
