#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "config/config.h"
#include "image/reference.h"

namespace berth::image {

// Credentials for one registry, from the PullImage AuthConfig or from images.auth_file.
struct Credentials {
  std::string username;
  std::string password;
  std::string identity_token;  // OAuth2 refresh token ("identitytoken" in docker config.json)
  std::string registry_token;  // a bearer token sent as-is
  bool empty() const {
    return username.empty() && password.empty() && identity_token.empty() &&
           registry_token.empty();
  }
  bool operator==(const Credentials&) const = default;
};

// Tells credentials apart without holding them: "anonymous", or a digest of them. Tokens and
// in-flight pulls are keyed by it, so one caller's credentials never serve another.
std::string CredentialsFingerprint(const Credentials& credentials);

// Whether `credentials` may go to the token service at `url`: over TLS only, unless the registry
// itself is an insecure source (then there is no TLS to keep them in anyway).
absl::Status MaySendCredentials(absl::string_view url, bool insecure_source,
                                const Credentials& credentials);

// Builds credentials from the fields of a CRI AuthConfig. `auth` is base64("user:password") and,
// when set, wins over username/password. InvalidArgument if `auth` does not decode to "user:pass".
absl::StatusOr<Credentials> CredentialsFromAuthConfig(absl::string_view username,
                                                      absl::string_view password,
                                                      absl::string_view auth,
                                                      absl::string_view identity_token,
                                                      absl::string_view registry_token);

// Looks up credentials for `ref` in a docker config.json / containers auth.json file ("auths"
// keyed by "host", "host/namespace/..." (most specific wins) or docker's legacy
// "https://index.docker.io/v1/" for docker.io). Empty credentials when the file has no entry.
// NotFound if the file is missing; InvalidArgument naming the file for bad JSON or a bad "auth".
absl::StatusOr<Credentials> CredentialsFromAuthFile(const std::string& path, const Reference& ref);

// One place an image can be fetched from: a mirror, the registry itself, or the location its
// prefix is rewritten to. `repository` is the path on that host (a rewrite or a mirror with a path
// changes it).
struct Source {
  std::string host;        // host[:port] of the registry API
  std::string repository;  // e.g. "library/busybox"
  bool insecure = false;   // plain HTTP or TLS without verification
  bool mirror = false;
  bool operator==(const Source&) const = default;
};

// Where to fetch `ref` from, in order, per images.registries (the entry whose prefix matches the
// reference name at a path-component boundary, longest prefix wins): its mirrors, then the
// registry itself; or, with `location`, only the rewritten location (the original host is never
// contacted). Without a matching entry: the registry itself, TLS verified.
std::vector<Source> SourcesFor(const config::ImagesConfig& images, const Reference& ref);

// Asked during transfers (about once a second) and between retries: OK to go on, else why to stop
// (the caller went away, the pull's deadline passed); the request then fails with that status.
using StopCheck = std::function<absl::Status()>;

// What a registry client has learnt that saves requests: which insecure hosts speak plain HTTP,
// and the bearer tokens it holds, each keyed by host, scope and a digest of the credentials. A
// client in a short-lived process (berth-fetch) is given what the last one learnt.
struct RegistryMemory {
  std::map<std::string, std::string> schemes;  // host -> "http" / "https"
  struct Token {
    std::string header;        // "Bearer ..."
    int64_t expires_unix = 0;  // seconds since the epoch
  };
  std::map<std::string, Token> tokens;

  // The header of the token under `key` if it has not expired by `now_unix`, else "".
  std::string TokenFor(const std::string& key, int64_t now_unix) const;
  // Adds what `other` knows (a scheme other than http or https is ignored), then drops the
  // tokens expired by `now_unix`.
  void Merge(const RegistryMemory& other, int64_t now_unix);
};

// The registry side of the OCI distribution spec. Implementations are thread-safe: blobs of one
// image are fetched in parallel.
class RegistryClient {
 public:
  virtual ~RegistryClient() = default;

  struct Manifest {
    std::string media_type;  // from the Content-Type header (or the body's mediaType)
    std::string digest;      // sha256 of the body
    std::string body;
  };

  // GET /v2/<repository>/manifests/<reference> (a tag or a digest) accepting OCI index and
  // manifest and Docker manifest list and schema 2. A digest reference is verified against the
  // body. Errors: NotFound when the registry does not know the manifest; Unauthenticated /
  // PermissionDenied when credentials are missing or refused; FailedPrecondition for a Docker
  // schema 1 manifest (not supported, named as such); Unavailable for network failures after
  // retries; InvalidArgument for a digest mismatch. Messages name the host and repository.
  virtual absl::StatusOr<Manifest> GetManifest(const Source& source, absl::string_view reference,
                                               const Credentials& credentials,
                                               const StopCheck& stop = {}) = 0;

  // GET /v2/<repository>/blobs/<digest> into `dest_path` (created or truncated, mode 0600),
  // following redirects to blob storage, verifying `size` and the sha256 digest while streaming.
  // Transient failures (connection errors, 5xx, 429) are retried with backoff; a transfer with no
  // byte for the stall timeout fails at once, unretried (a slow trickle does not); `stop` ends it
  // with its status. `progress` (may be empty) gets the bytes received so far. On failure
  // `dest_path` is removed. DataLoss for a digest or size mismatch; other codes as GetManifest.
  virtual absl::Status FetchBlob(const Source& source, absl::string_view digest, int64_t size,
                                 const std::string& dest_path, const Credentials& credentials,
                                 const std::function<void(int64_t)>& progress,
                                 const StopCheck& stop = {}) = 0;

  // What it has learnt, and more to know (added; expired tokens are dropped). Nothing by default.
  virtual RegistryMemory Remembered() const { return {}; }
  virtual void Remember(const RegistryMemory& /*memory*/) {}
};
using RegistryClientPtr = std::unique_ptr<RegistryClient>;

// RegistryClient over libcurl: HTTPS (HTTP and unverified TLS for insecure sources, trying HTTPS
// first and remembering what the host speaks), the WWW-Authenticate challenge (Bearer token
// service with the credentials or anonymously, Basic), token cache per host and scope.
class CurlRegistryClient final : public RegistryClient {
 public:
  struct Options {
    std::chrono::seconds stall_timeout{30};
    std::chrono::seconds connect_timeout{15};
    int attempts = 4;                                  // per request, for transient failures
    std::chrono::milliseconds first_backoff{200};      // doubles per attempt
    std::string user_agent;                            // "" = "berth/<version>"
  };

  explicit CurlRegistryClient(Options options);
  CurlRegistryClient() : CurlRegistryClient(Options{}) {}
  ~CurlRegistryClient() override;

  absl::StatusOr<Manifest> GetManifest(const Source& source, absl::string_view reference,
                                       const Credentials& credentials,
                                       const StopCheck& stop = {}) override;
  absl::Status FetchBlob(const Source& source, absl::string_view digest, int64_t size,
                         const std::string& dest_path, const Credentials& credentials,
                         const std::function<void(int64_t)>& progress,
                         const StopCheck& stop = {}) override;
  RegistryMemory Remembered() const override;
  void Remember(const RegistryMemory& memory) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::image
