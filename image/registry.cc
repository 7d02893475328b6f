// CurlRegistryClient: the OCI distribution API over libcurl.

#include "image/registry.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/errno_status.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "base/version.h"
#include "image/auth.h"
#include "image/digest.h"
#include "image/manifest.h"
#include "nlohmann/json.hpp"

namespace berth::image {
namespace {

constexpr size_t kMaxManifestBytes = 4 << 20;
constexpr size_t kMaxTokenBytes = 1 << 20;
constexpr int kMaxRedirects = 5;

constexpr char kAcceptManifests[] =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

// Where response bytes go. Reset() before each attempt: a retry starts from zero.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual absl::Status Reset() = 0;
  // False stops the transfer (limit exceeded or write failed); status() says why.
  virtual bool Write(const char* data, size_t size) = 0;
  virtual absl::Status status() const = 0;
};

class StringSink final : public Sink {
 public:
  explicit StringSink(size_t limit) : limit_(limit) {}
  absl::Status Reset() override {
    body_.clear();
    overflow_ = false;
    return absl::OkStatus();
  }
  bool Write(const char* data, size_t size) override {
    if (body_.size() + size > limit_) {
      overflow_ = true;
      return false;
    }
    body_.append(data, size);
    return true;
  }
  absl::Status status() const override {
    return overflow_ ? absl::ResourceExhaustedError(
                           absl::StrCat("response larger than ", limit_, " bytes"))
                     : absl::OkStatus();
  }
  const std::string& body() const { return body_; }

 private:
  size_t limit_;
  std::string body_;
  bool overflow_ = false;  // a write was refused: the response is over the limit
};

class BlobSink final : public Sink {
 public:
  BlobSink(UniqueFd fd, int64_t size, std::function<void(int64_t)> progress)
      : fd_(std::move(fd)), expected_(size), progress_(std::move(progress)) {}
  absl::Status Reset() override {
    written_ = 0;
    sha_ = std::make_unique<Sha256>();
    error_ = absl::OkStatus();
    if (::ftruncate(fd_.get(), 0) != 0 || ::lseek(fd_.get(), 0, SEEK_SET) != 0) {
      return ErrnoToStatus(errno, "truncate blob file");
    }
    return absl::OkStatus();
  }
  bool Write(const char* data, size_t size) override {
    if (written_ + static_cast<int64_t>(size) > expected_) {
      error_ = absl::DataLossError(absl::StrCat("more than the ", expected_, " bytes announced"));
      return false;
    }
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_.get(), data + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error_ = ErrnoToStatus(errno, "write blob file");
        return false;
      }
      done += static_cast<size_t>(n);
    }
    sha_->Update(data, size);
    written_ += static_cast<int64_t>(size);
    if (progress_) progress_(written_);
    return true;
  }
  absl::Status status() const override { return error_; }
  int64_t written() const { return written_; }
  std::string Digest() { return sha_->Finish(); }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  int64_t expected_;
  std::function<void(int64_t)> progress_;
  int64_t written_ = 0;
  std::unique_ptr<Sha256> sha_ = std::make_unique<Sha256>();
  absl::Status error_;
};

struct Response {
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; last value wins
  std::string error_body;                       // the body of a non-2xx response
  bool stalled = false;                         // no byte for the stall timeout
  absl::Status stopped;                         // what the stop check said, if it ended it
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// libcurl's progress callback (at least once a second): a transfer with no byte either way for
// `stall` is cut, and so is one the stop check calls off.
struct Watch {
  std::chrono::seconds stall;
  const StopCheck* stop;
  std::chrono::steady_clock::time_point last_change = std::chrono::steady_clock::now();
  curl_off_t last_bytes = -1;
  bool stalled = false;
  absl::Status stopped;
};

int OnProgress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
               curl_off_t ulnow) {
  (void)dltotal;
  (void)ultotal;
  auto* w = static_cast<Watch*>(user);
  const auto now = std::chrono::steady_clock::now();
  if (dlnow + ulnow != w->last_bytes) {
    w->last_bytes = dlnow + ulnow;
    w->last_change = now;
  } else if (now - w->last_change >= w->stall) {
    w->stalled = true;
    return 1;
  }
  if (w->stop != nullptr && *w->stop) {
    absl::Status s = (*w->stop)();
    if (!s.ok()) {
      w->stopped = std::move(s);
      return 1;
    }
  }
  return 0;
}

// Only a successful response's body goes to the sink; an error's (401, 404, redirects) is kept
// for the message.
struct BodyTarget {
  Sink* sink;
  CURL* curl;
  std::string error_body;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* target = static_cast<BodyTarget*>(user);
  long status = 0;
  curl_easy_getinfo(target->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) {
    return target->sink->Write(data, size * count) ? size * count : 0;
  }
  if (target->error_body.size() < 65536) target->error_body.append(data, size * count);
  return size * count;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<Response*>(user);
  absl::string_view line(data, size * count);
  if (absl::StartsWith(line, "HTTP/")) response->headers.clear();  // a new response (redirects)
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    response->headers[absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)))] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return size * count;
}

bool IsTransient(const Response& r) {
  switch (r.curl) {
    case CURLE_OK:
      return r.status >= 500 || r.status == 429 || r.status == 408;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

// What an https attempt at a plain-HTTP (insecure) registry looks like.
bool LooksLikePlainHttp(CURLcode code) {
  return code == CURLE_SSL_CONNECT_ERROR || code == CURLE_SSL_CERTPROBLEM ||
         code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_RECV_ERROR ||
         code == CURLE_GOT_NOTHING;
}

// Tokens are per host, scope and credentials: a token got with one pull's credentials never
// serves another pull's (or a pull without any).
std::string TokenKey(const std::string& host, const std::string& scope, const Credentials& c) {
  return absl::StrCat(host, " ", scope, " ", CredentialsFingerprint(c));
}

std::string HostOf(absl::string_view url) {
  absl::string_view rest = url.substr(url.find("://") == absl::string_view::npos
                                          ? 0
                                          : url.find("://") + 3);
  return std::string(rest.substr(0, rest.find('/')));
}

// The message of a distribution-spec error body ({"errors":[{"code":..,"message":..}]}).
std::string ErrorDetail(absl::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (!j.is_object() || !j.contains("errors") || !j["errors"].is_array() || j["errors"].empty()) {
    return std::string(body.substr(0, 200));
  }
  const nlohmann::json& e = j["errors"][0];
  return absl::StrCat(StringField(e, "code"), ": ", StringField(e, "message"));
}

}  // namespace

struct CurlRegistryClient::Impl {
  explicit Impl(Options o) : options(std::move(o)) {
    if (options.user_agent.empty()) options.user_agent = absl::StrCat("berth/", kVersion);
  }
  ~Impl() {
    if (share != nullptr) curl_share_cleanup(share);
  }

  // libcurl, and through it OpenSSL, is set up at the first request rather than at start: a
  // berthd that pulls nothing never maps the pages that set-up touches (about 4 MiB).
  CURLSH* Share() {
    std::call_once(share_once, [this] {
      static std::once_flag global;
      std::call_once(global, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
      share = curl_share_init();
      curl_share_setopt(share, CURLSHOPT_LOCKFUNC, &Impl::Lock);
      curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, &Impl::Unlock);
      curl_share_setopt(share, CURLSHOPT_USERDATA, this);
      curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
      curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
      curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    });
    return share;
  }

  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Impl*>(user)->locks[static_cast<size_t>(data) % kLocks].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Impl*>(user)->locks[static_cast<size_t>(data) % kLocks].unlock();
  }

  // One HTTP GET (or POST with `form`), no retries, no redirects followed.
  Response Perform(const std::string& url, const std::vector<std::string>& headers, Sink& sink,
                   bool insecure, const StopCheck& stop, const std::string& form = "",
                   const std::string& userpwd = "");
  // GET with scheme choice, auth, retries and redirects.
  absl::StatusOr<Response> Get(const Source& source, const std::string& path,
                               const std::vector<std::string>& headers, Sink& sink,
                               const Credentials& credentials, const StopCheck& stop);
  absl::StatusOr<std::string> Token(const Source& source, const AuthChallenge& challenge,
                                    const Credentials& credentials, const StopCheck& stop);
  std::string Scheme(const Source& source);
  void SetScheme(const std::string& host, const std::string& scheme);
  std::string Context(const Source& source) const {
    return absl::StrCat(source.host, "/", source.repository);
  }
  // A transfer of `what` that went stall_timeout without a byte.
  absl::Status Stalled(const std::string& what) const {
    return absl::UnavailableError(absl::StrCat(what, ": no data for ", options.stall_timeout.count(),
                                               " s (images.stall_timeout)"));
  }

  Options options;
  std::once_flag share_once;
  CURLSH* share = nullptr;  // set by Share()
  static constexpr size_t kLocks = 8;
  std::array<std::mutex, kLocks> locks;

  mutable absl::Mutex mu;
  // Which hosts speak plain HTTP, and the bearer tokens, by host + scope + credentials.
  RegistryMemory memory ABSL_GUARDED_BY(mu);
};

Response CurlRegistryClient::Impl::Perform(const std::string& url,
                                           const std::vector<std::string>& headers, Sink& sink,
                                           bool insecure, const StopCheck& stop,
                                           const std::string& form,
                                           const std::string& userpwd) {
  Response response;
  CURLSH* const shared = Share();  // before curl_easy_init: it sets libcurl up first
  CURL* curl = curl_easy_init();
  absl::Cleanup free_curl = [curl] { curl_easy_cleanup(curl); };
  curl_slist* list = nullptr;
  for (const std::string& h : headers) list = curl_slist_append(list, h.c_str());
  absl::Cleanup free_list = [list] { curl_slist_free_all(list); };
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_SHARE, shared);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options.user_agent.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options.connect_timeout.count()));
  // A stall (no byte for stall_timeout) fails; a slow trickle does not. The stop check too.
  Watch watch{options.stall_timeout, &stop};
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &watch);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  BodyTarget target{&sink, curl, {}};
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &target);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response);
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  if (insecure) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!form.empty()) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, form.c_str());
  if (!userpwd.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERPWD, userpwd.c_str());
  }
  response.curl = curl_easy_perform(curl);
  response.stalled = watch.stalled;
  response.stopped = std::move(watch.stopped);
  response.curl_error = error[0] != '\0' ? error : curl_easy_strerror(response.curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  response.error_body = std::move(target.error_body);
  return response;
}

std::string CurlRegistryClient::Impl::Scheme(const Source& source) {
  absl::MutexLock lock(&mu);
  auto it = memory.schemes.find(source.host);
  return it == memory.schemes.end() ? "https" : it->second;
}

void CurlRegistryClient::Impl::SetScheme(const std::string& host, const std::string& scheme) {
  absl::MutexLock lock(&mu);
  memory.schemes[host] = scheme;
}

absl::StatusOr<std::string> CurlRegistryClient::Impl::Token(const Source& source,
                                                           const AuthChallenge& challenge,
                                                           const Credentials& credentials,
                                                           const StopCheck& stop) {
  auto param = [&](const char* key) {
    auto it = challenge.params.find(key);
    return it == challenge.params.end() ? std::string() : it->second;
  };
  const std::string realm = param("realm");
  if (realm.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(Context(source), ": bearer challenge without realm"));
  }
  std::string scope = param("scope");
  if (scope.empty()) scope = absl::StrCat("repository:", source.repository, ":pull");
  const std::string key = TokenKey(source.host, scope, credentials);
  RETURN_IF_ERROR(Annotate(MaySendCredentials(realm, source.insecure, credentials),
                           Context(source)));
  {
    absl::MutexLock lock(&mu);
    if (std::string header = memory.TokenFor(key, absl::ToUnixSeconds(absl::Now()));
        !header.empty()) {
      return header;
    }
  }
  auto escape = [](const std::string& s) {
    char* e = curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
    std::string out = e != nullptr ? e : "";
    curl_free(e);
    return out;
  };
  std::string query = absl::StrCat("scope=", escape(scope));
  if (!param("service").empty()) absl::StrAppend(&query, "&service=", escape(param("service")));
  StringSink sink(kMaxTokenBytes);
  Response r;
  if (!credentials.identity_token.empty()) {
    const std::string form = absl::StrCat(query, "&grant_type=refresh_token&client_id=berth",
                                          "&refresh_token=", escape(credentials.identity_token));
    r = Perform(realm, {}, sink, source.insecure, stop, form);
  } else {
    const std::string userpwd = credentials.username.empty()
                                    ? ""
                                    : absl::StrCat(credentials.username, ":", credentials.password);
    r = Perform(absl::StrCat(realm, absl::StrContains(realm, '?') ? "&" : "?", query), {}, sink,
                source.insecure, stop, "", userpwd);
  }
  if (!r.stopped.ok()) return r.stopped;
  const std::string service = absl::StrCat(Context(source), ": token service ", realm);
  if (r.stalled) return Stalled(service);
  if (r.curl != CURLE_OK && !sink.status().ok()) return Annotate(sink.status(), service);
  if (r.curl != CURLE_OK) return absl::UnavailableError(absl::StrCat(service, ": ", r.curl_error));
  if (r.status == 401 || r.status == 403) {
    return absl::UnauthenticatedError(absl::StrCat(
        Context(source), ": token service ", realm, " refused the credentials (HTTP ", r.status,
        ")"));
  }
  nlohmann::json j = nlohmann::json::parse(sink.body(), nullptr, false);
  std::string token = StringField(j, "token");
  if (token.empty()) token = StringField(j, "access_token");
  if (r.status != 200 || token.empty()) {
    return absl::UnavailableError(absl::StrCat(Context(source), ": token service ", realm,
                                               " answered HTTP ", r.status, " without a token"));
  }
  int64_t expires_in = 60;
  if (auto it = j.find("expires_in"); it != j.end() && it->is_number_integer()) {
    expires_in = std::clamp<int64_t>(it->get<int64_t>(), 1, 24 * 3600);
  }
  const std::string header = absl::StrCat("Bearer ", token);
  absl::MutexLock lock(&mu);
  memory.tokens[key] = {header,
                        absl::ToUnixSeconds(absl::Now()) + std::max<int64_t>(expires_in - 5, 1)};
  return header;
}

absl::StatusOr<Response> CurlRegistryClient::Impl::Get(const Source& source,
                                                       const std::string& path,
                                                       const std::vector<std::string>& headers,
                                                       Sink& sink,
                                                       const Credentials& credentials,
                                                       const StopCheck& stop) {
  const std::string context = Context(source);
  std::string authorization;
  if (!credentials.registry_token.empty()) {
    authorization = absl::StrCat("Bearer ", credentials.registry_token);
  } else {
    absl::MutexLock lock(&mu);
    authorization = memory.TokenFor(
        TokenKey(source.host, absl::StrCat("repository:", source.repository, ":pull"),
                 credentials),
        absl::ToUnixSeconds(absl::Now()));
  }
  bool challenged = false;
  absl::Duration backoff = absl::FromChrono(options.first_backoff);
  Response r;
  for (int attempt = 1;; ++attempt) {
    std::string scheme = source.insecure ? Scheme(source) : "https";
    std::string url = absl::StrCat(scheme, "://", source.host, "/v2/", source.repository, path);
    bool send_auth = true;
    for (int hop = 0; hop <= kMaxRedirects; ++hop) {
      std::vector<std::string> all = headers;
      if (send_auth && !authorization.empty()) all.push_back("Authorization: " + authorization);
      RETURN_IF_ERROR(sink.Reset());
      r = Perform(url, all, sink, source.insecure, stop);
      if (!r.stopped.ok()) return Annotate(r.stopped, absl::StrCat(context, path));
      if (r.stalled) return Stalled(absl::StrCat(context, path));
      if (r.curl != CURLE_OK && source.insecure && scheme == "https" && hop == 0 &&
          LooksLikePlainHttp(r.curl)) {
        spdlog::debug("registry {}: no TLS ({}), using plain HTTP", source.host, r.curl_error);
        SetScheme(source.host, "http");
        scheme = "http";
        url = absl::StrCat(scheme, "://", source.host, "/v2/", source.repository, path);
        --hop;
        continue;
      }
      const std::string location = r.Header("location");
      if (r.curl != CURLE_OK || r.status < 300 || r.status >= 400 || location.empty()) break;
      // Blob storage redirects: the registry's credentials stay with the registry, and never
      // leave TLS for plain HTTP.
      const bool was_tls = absl::StartsWithIgnoreCase(url, "https://");
      const std::string origin = url.substr(0, url.find('/', url.find("://") + 3));
      url = absl::StrContains(location, "://") ? location : absl::StrCat(origin, location);
      send_auth = send_auth && HostOf(url) == source.host &&
                  !(was_tls && absl::StartsWithIgnoreCase(url, "http://"));
    }
    if (r.curl == CURLE_OK && r.status >= 300 && r.status < 400 &&
        !r.Header("location").empty()) {
      return absl::UnavailableError(
          absl::StrCat(context, path, ": too many redirects (more than ", kMaxRedirects, ")"));
    }
    if (r.curl != CURLE_OK && !sink.status().ok()) {
      return Annotate(sink.status(), absl::StrCat(context, path));
    }
    if (r.status == 401 && !challenged && credentials.registry_token.empty()) {
      challenged = true;
      const std::vector<AuthChallenge> challenges =
          ParseWwwAuthenticate(r.Header("www-authenticate"));
      const AuthChallenge* bearer = nullptr;
      const AuthChallenge* basic = nullptr;
      for (const AuthChallenge& c : challenges) {
        if (c.scheme == "bearer") bearer = &c;
        if (c.scheme == "basic") basic = &c;
      }
      if (bearer != nullptr) {
        ASSIGN_OR_RETURN(authorization, Token(source, *bearer, credentials, stop));
        --attempt;
        continue;
      }
      if (basic != nullptr && !credentials.username.empty()) {
        std::string encoded;
        absl::Base64Escape(absl::StrCat(credentials.username, ":", credentials.password),
                           &encoded);
        authorization = absl::StrCat("Basic ", encoded);
        --attempt;
        continue;
      }
    }
    if (r.curl == CURLE_OK && r.status == 401) {
      return absl::UnauthenticatedError(absl::StrCat(
          context, ": authentication required",
          credentials.empty() ? " and no credentials were given" : ": credentials refused"));
    }
    if (r.curl == CURLE_OK && r.status == 403) {
      return absl::PermissionDeniedError(absl::StrCat(context, ": access denied"));
    }
    if (!IsTransient(r)) break;
    if (attempt >= options.attempts) {
      return absl::UnavailableError(absl::StrCat(
          context, path, ": ",
          r.curl != CURLE_OK ? r.curl_error : absl::StrCat("HTTP ", r.status), " (after ",
          attempt, " attempts)"));
    }
    spdlog::debug("registry {}{}: attempt {} failed ({}), retrying", context, path, attempt,
                  r.curl != CURLE_OK ? r.curl_error : absl::StrCat("HTTP ", r.status));
    for (absl::Time until = absl::Now() + backoff; absl::Now() < until;) {
      if (stop) RETURN_IF_ERROR(Annotate(stop(), absl::StrCat(context, path)));
      absl::SleepFor(std::min(absl::Milliseconds(100), until - absl::Now()));
    }
    backoff *= 2;
  }
  if (r.curl != CURLE_OK) {
    const bool plain_http = !source.insecure && LooksLikePlainHttp(r.curl);
    return absl::UnavailableError(absl::StrCat(
        context, path, ": ", r.curl_error,
        plain_http ? " (if this registry speaks plain HTTP, give its prefix insecure: true in "
                     "images.registries)"
                   : ""));
  }
  return r;
}

CurlRegistryClient::CurlRegistryClient(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

CurlRegistryClient::~CurlRegistryClient() = default;

absl::StatusOr<RegistryClient::Manifest> CurlRegistryClient::GetManifest(
    const Source& source, absl::string_view reference, const Credentials& credentials,
    const StopCheck& stop) {
  const std::string what = absl::StrCat(impl_->Context(source), IsValidDigest(reference) ? "@" : ":",
                                        reference);
  StringSink sink(kMaxManifestBytes);
  ASSIGN_OR_RETURN(Response r, impl_->Get(source, absl::StrCat("/manifests/", reference),
                                          {kAcceptManifests}, sink, credentials, stop));
  if (r.status == 404) {
    return absl::NotFoundError(
        absl::StrCat("manifest unknown: ", what, " (", ErrorDetail(r.error_body), ")"));
  }
  if (r.status != 200) {
    return absl::InternalError(absl::StrCat("manifest ", what, ": HTTP ", r.status, ": ",
                                            ErrorDetail(r.error_body)));
  }
  Manifest m;
  m.body = sink.body();
  m.digest = DigestOf(m.body);
  m.media_type = std::string(absl::StripAsciiWhitespace(
      absl::string_view(r.Header("content-type")).substr(0, r.Header("content-type").find(';'))));
  nlohmann::json j = nlohmann::json::parse(m.body, nullptr, false);
  if (!IsIndexMediaType(m.media_type) && !IsManifestMediaType(m.media_type) && j.is_object()) {
    m.media_type = StringField(j, "mediaType");
    if (m.media_type.empty() && j.contains("manifests")) m.media_type = kOciIndex;
    if (m.media_type.empty() && j.contains("layers")) m.media_type = kOciManifest;
  }
  if (absl::StartsWith(m.media_type, "application/vnd.docker.distribution.manifest.v1") ||
      (j.is_object() && j.contains("schemaVersion") && j["schemaVersion"] == 1)) {
    return absl::FailedPreconditionError(
        absl::StrCat("manifest ", what, ": Docker schema 1 manifests are not supported"));
  }
  if (!IsIndexMediaType(m.media_type) && !IsManifestMediaType(m.media_type)) {
    return absl::FailedPreconditionError(
        absl::StrCat("manifest ", what, ": unsupported media type '", m.media_type, "'"));
  }
  if (IsValidDigest(reference) && m.digest != reference) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest ", what, ": content has digest ", m.digest));
  }
  return m;
}

absl::Status CurlRegistryClient::FetchBlob(const Source& source, absl::string_view digest,
                                           int64_t size, const std::string& dest_path,
                                           const Credentials& credentials,
                                           const std::function<void(int64_t)>& progress,
                                           const StopCheck& stop) {
  const std::string what = absl::StrCat("blob ", digest, " from ", impl_->Context(source));
  if (!IsValidDigest(digest)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a sha256 digest"));
  }
  const int fd = ::open(dest_path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create ", dest_path));
  BlobSink sink(UniqueFd(fd), size, progress);
  absl::Cleanup remove = [&] { ::unlink(dest_path.c_str()); };
  absl::StatusOr<Response> r =
      impl_->Get(source, absl::StrCat("/blobs/", digest), {}, sink, credentials, stop);
  if (!r.ok()) return r.status();
  if (r->status == 404) return absl::NotFoundError(absl::StrCat(what, ": blob unknown"));
  if (r->status != 200) {
    return absl::InternalError(
        absl::StrCat(what, ": HTTP ", r->status, ": ", ErrorDetail(r->error_body)));
  }
  if (sink.written() != size) {
    return absl::DataLossError(
        absl::StrCat(what, ": got ", sink.written(), " bytes, the manifest says ", size));
  }
  if (const std::string got = sink.Digest(); got != digest) {
    return absl::DataLossError(absl::StrCat(what, ": digest mismatch (got ", got, ")"));
  }
  std::move(remove).Cancel();
  return absl::OkStatus();
}

RegistryMemory CurlRegistryClient::Remembered() const {
  absl::MutexLock lock(&impl_->mu);
  RegistryMemory memory;
  memory.Merge(impl_->memory, absl::ToUnixSeconds(absl::Now()));
  return memory;
}

void CurlRegistryClient::Remember(const RegistryMemory& memory) {
  absl::MutexLock lock(&impl_->mu);
  impl_->memory.Merge(memory, absl::ToUnixSeconds(absl::Now()));
}

}  // namespace berth::image
