#include "image/fetch_helper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/errno_status.h"
#include "base/process.h"
#include "base/reaper.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"

namespace berth::image {
namespace {

using nlohmann::json;

// A manifest is at most 4 MiB, base64 in the answer: no line of a helper is longer than this.
constexpr size_t kMaxLine = 8 << 20;

json ToJson(const Source& s) {
  return {{"host", s.host}, {"repository", s.repository}, {"insecure", s.insecure},
          {"mirror", s.mirror}};
}

Source SourceFrom(const json& j) {
  return Source{j.at("host").get<std::string>(), j.at("repository").get<std::string>(),
                j.at("insecure").get<bool>(), j.at("mirror").get<bool>()};
}

json ToJson(const Credentials& c) {
  return {{"username", c.username}, {"password", c.password},
          {"identity_token", c.identity_token}, {"registry_token", c.registry_token}};
}

Credentials CredentialsFrom(const json& j) {
  return Credentials{j.at("username").get<std::string>(), j.at("password").get<std::string>(),
                     j.at("identity_token").get<std::string>(),
                     j.at("registry_token").get<std::string>()};
}

json ToJson(const absl::Status& s) {
  return {{"code", static_cast<int>(s.code())}, {"message", std::string(s.message())}};
}

absl::Status StatusFrom(const json& j) {
  const int code = j.at("code").get<int>();
  if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::InternalError(absl::StrCat("berth-fetch answered status code ", code));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), j.at("message").get<std::string>());
}

json ToJson(const RegistryMemory& m) {
  json tokens = json::object();
  for (const auto& [key, token] : m.tokens) {
    tokens[key] = {{"header", token.header}, {"expires", token.expires_unix}};
  }
  return {{"schemes", m.schemes}, {"tokens", std::move(tokens)}};
}

RegistryMemory MemoryFrom(const json& j) {
  RegistryMemory m;
  m.schemes = j.at("schemes").get<std::map<std::string, std::string>>();
  for (const auto& [key, token] : j.at("tokens").items()) {
    m.tokens[key] = {token.at("header").get<std::string>(), token.at("expires").get<int64_t>()};
  }
  return m;
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  ReapChild(pid);
}

}  // namespace

absl::StatusOr<json> FetchHelperClient::Run(
    const json& request, const std::function<absl::Status(const json&)>& on_progress,
    const StopCheck& stop) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe");
  UniqueFd in_read(in[0]), in_write(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe");
  UniqueFd out_read(out[0]), out_write(out[1]);
  // Spawned from this thread, which waits for it: the helper's PR_SET_PDEATHSIG is tied to the
  // thread that started it. (SpawnSpec::nice would start it from a thread that ends at once; the
  // helper lowers its own priority instead.)
  // berthd's environment, as libcurl read it in-process (HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE).
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  env.push_back(absl::StrCat(kFetchParentEnv, "=", ::getpid()));
  absl::StatusOr<pid_t> spawned = SpawnProcess({.argv = {options_.path},
                                                .env = std::move(env),
                                                .stdin_fd = in_read.get(),
                                                .stdout_fd = out_write.get(),
                                                .stderr_fd = STDERR_FILENO});
  if (!spawned.ok()) {  // not the image's NotFound: berth's own installation is at fault
    return absl::InternalError(absl::StrCat("image helper: ", spawned.status().message()));
  }
  const pid_t pid = *spawned;
  bool reaped = false;
  absl::Cleanup reap = [&] {
    if (!reaped) KillAndReap(pid);
  };
  in_read.Reset();
  out_write.Reset();
  // The request is small (a pipe holds 64 KiB) and the helper reads all of it before anything else.
  // Never a throw for a credential that is not UTF-8: it reaches the helper as U+FFFD, which the
  // registry then refuses.
  const std::string text = request.dump(-1, ' ', false, json::error_handler_t::replace);
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = WriteNoSigpipe(in_write.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EPIPE) break;  // it ended already: its exit code says more below
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("write to ", options_.path));
    done += static_cast<size_t>(n);
  }
  in_write.Reset();

  std::string buffer;
  std::optional<json> answer;
  auto handle_line = [&](absl::string_view line) -> absl::Status {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("progress") && j["progress"].is_object()) {
      return on_progress ? on_progress(j["progress"]) : absl::OkStatus();
    }
    if (j.is_object() && j.contains("status") && !answer) {
      answer = std::move(j);
      return absl::OkStatus();
    }
    return absl::InternalError(absl::StrCat(options_.path, " wrote a line that is not its protocol"));
  };
  char chunk[64 << 10];
  for (;;) {
    if (stop) RETURN_IF_ERROR(stop());
    pollfd p{out_read.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, 1000);
    if (ready < 0 && errno != EINTR) return ErrnoToStatus(errno, "poll");
    if (ready <= 0) continue;
    const ssize_t n = ::read(out_read.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("read from ", options_.path));
    if (n == 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
      RETURN_IF_ERROR(handle_line(absl::string_view(buffer).substr(start, nl - start)));
    }
    buffer.erase(0, start);
    if (buffer.size() > kMaxLine) {
      return absl::InternalError(absl::StrCat(options_.path, " wrote a line over ", kMaxLine,
                                              " bytes"));
    }
  }
  const int status = ReapChild(pid);
  reaped = true;
  if (!answer) {
    return absl::InternalError(absl::StrCat(options_.path, " ended (exit code ",
                                            DecodeWaitStatus(status), ") without an answer"));
  }
  try {
    if (answer->contains("memory")) Remember(MemoryFrom(answer->at("memory")));
    RETURN_IF_ERROR(StatusFrom(answer->at("status")));
    return answer->value("result", json::object());
  } catch (const json::exception& e) {
    return absl::InternalError(absl::StrCat(options_.path, " answered: ", e.what()));
  }
}

RegistryMemory FetchHelperClient::Remembered() const {
  absl::MutexLock lock(&mu_);
  return memory_;
}

void FetchHelperClient::Remember(const RegistryMemory& memory) {
  absl::MutexLock lock(&mu_);
  memory_.Merge(memory, absl::ToUnixSeconds(absl::Now()));
}

absl::StatusOr<RegistryClient::Manifest> FetchHelperClient::GetManifest(
    const Source& source, absl::string_view reference, const Credentials& credentials,
    const StopCheck& stop) {
  ASSIGN_OR_RETURN(json result,
                   Run({{"op", "manifest"},
                        {"source", ToJson(source)},
                        {"reference", std::string(reference)},
                        {"credentials", ToJson(credentials)},
                        {"memory", ToJson(Remembered())},
                        {"stall_timeout", options_.stall_timeout.count()}},
                       nullptr, stop));
  Manifest manifest;
  try {
    manifest.media_type = result.at("media_type").get<std::string>();
    manifest.digest = result.at("digest").get<std::string>();
    if (!absl::Base64Unescape(result.at("body").get<std::string>(), &manifest.body)) {
      return absl::InternalError(absl::StrCat(options_.path, " answered a body not in base64"));
    }
  } catch (const json::exception& e) {
    return absl::InternalError(absl::StrCat(options_.path, " answered: ", e.what()));
  }
  return manifest;
}

absl::Status FetchHelperClient::FetchBlob(const Source& source, absl::string_view digest,
                                          int64_t size, const std::string& dest_path,
                                          const Credentials& credentials,
                                          const std::function<void(int64_t)>& progress,
                                          const StopCheck& stop) {
  absl::StatusOr<json> result = Run(
      {{"op", "blob"},
       {"source", ToJson(source)},
       {"digest", std::string(digest)},
       {"size", size},
       {"dest", dest_path},
       {"credentials", ToJson(credentials)},
       {"memory", ToJson(Remembered())},
       {"stall_timeout", options_.stall_timeout.count()}},
      [&](const json& p) -> absl::Status {
        if (progress && p.contains("bytes") && p["bytes"].is_number_integer()) {
          progress(p["bytes"].get<int64_t>());
        }
        return absl::OkStatus();
      },
      stop);
  if (!result.ok()) ::unlink(dest_path.c_str());  // the helper may have been killed mid-way
  return result.status();
}

absl::StatusOr<UnpackResult> FetchHelperClient::Unpack(const std::string& blob_path,
                                                       const std::string& dest_dir,
                                                       const UnpackLimits& limits) {
  // The image's budget: the helper counts from what the image had when it started; the layers
  // unpacked beside it are added here as its progress comes, and past the budget it is stopped.
  int64_t counted = 0;
  auto count = [&](int64_t total) -> absl::Status {
    if (limits.image_bytes == nullptr || total <= counted) return absl::OkStatus();
    const int64_t n = total - counted;
    counted = total;
    if (limits.image_bytes->fetch_add(n) + n > limits.max_image_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "layer ", blob_path, ": the image is larger than images.max_image_size (",
          limits.max_image_bytes, " bytes uncompressed)"));
    }
    return absl::OkStatus();
  };
  json request = {{"op", "unpack"},
                  {"blob", blob_path},
                  {"dest", dest_dir},
                  {"max_bytes", limits.max_bytes},
                  {"max_entries", limits.max_entries},
                  {"max_depth", limits.max_depth}};
  if (limits.image_bytes != nullptr) {
    request["image_bytes"] = limits.image_bytes->load();
    request["max_image_bytes"] = limits.max_image_bytes;
  }
  ASSIGN_OR_RETURN(
      json result,
      Run(
          request,
          [&](const json& p) -> absl::Status {
            if (p.contains("stream_bytes") && p["stream_bytes"].is_number_integer()) {
              return count(p["stream_bytes"].get<int64_t>());
            }
            return absl::OkStatus();
          },
          [&]() -> absl::Status {
            return limits.stop ? Annotate(limits.stop(), absl::StrCat("layer ", blob_path))
                               : absl::OkStatus();
          }));
  UnpackResult unpacked;
  try {
    unpacked.diff_id = result.at("diff_id").get<std::string>();
    unpacked.size_bytes = result.at("size_bytes").get<int64_t>();
    unpacked.inodes = result.at("inodes").get<int64_t>();
    unpacked.stream_bytes = result.at("stream_bytes").get<int64_t>();
  } catch (const json::exception& e) {
    return absl::InternalError(absl::StrCat(options_.path, " answered: ", e.what()));
  }
  RETURN_IF_ERROR(count(unpacked.stream_bytes));
  return unpacked;
}

void ServeFetchRequest(const json& request,
                       const std::function<RegistryClient*(std::chrono::seconds)>& registry,
                       const UnpackFunction& unpack,
                       const std::function<void(const json&)>& write_line) {
  RegistryClient* client = nullptr;
  auto answer = [&](const absl::Status& status, json result) {
    json line = {{"status", ToJson(status)}, {"result", std::move(result)}};
    if (client != nullptr) line["memory"] = ToJson(client->Remembered());
    write_line(line);
  };
  try {
    const std::string op = request.at("op").get<std::string>();
    if (op == "manifest" || op == "blob") {
      client = registry(std::chrono::seconds(request.at("stall_timeout").get<int64_t>()));
      if (request.contains("memory")) client->Remember(MemoryFrom(request.at("memory")));
      const Source source = SourceFrom(request.at("source"));
      const Credentials credentials = CredentialsFrom(request.at("credentials"));
      if (op == "manifest") {
        absl::StatusOr<RegistryClient::Manifest> m =
            client->GetManifest(source, request.at("reference").get<std::string>(), credentials);
        if (!m.ok()) return answer(m.status(), json::object());
        return answer(absl::OkStatus(), {{"media_type", m->media_type},
                                         {"digest", m->digest},
                                         {"body", absl::Base64Escape(m->body)}});
      }
      auto last = std::chrono::steady_clock::now();
      absl::Status s = client->FetchBlob(
          source, request.at("digest").get<std::string>(), request.at("size").get<int64_t>(),
          request.at("dest").get<std::string>(), credentials, [&](int64_t bytes) {
            const auto now = std::chrono::steady_clock::now();
            if (now - last < std::chrono::seconds(1)) return;
            last = now;
            write_line({{"progress", {{"bytes", bytes}}}});
          });
      return answer(s, json::object());
    }
    if (op == "unpack") {
      UnpackLimits limits;
      limits.max_bytes = request.at("max_bytes").get<int64_t>();
      limits.max_entries = request.at("max_entries").get<int64_t>();
      limits.max_depth = request.at("max_depth").get<int64_t>();
      std::atomic<int64_t> image_bytes{0};
      int64_t start = 0;
      if (request.contains("image_bytes")) {
        start = request.at("image_bytes").get<int64_t>();
        image_bytes = start;
        limits.image_bytes = &image_bytes;
        limits.max_image_bytes = request.at("max_image_bytes").get<int64_t>();
      }
      limits.stop = [&]() -> absl::Status {
        if (limits.image_bytes != nullptr) {
          write_line({{"progress", {{"stream_bytes", image_bytes.load() - start}}}});
        }
        return absl::OkStatus();
      };
      absl::StatusOr<UnpackResult> r = unpack(request.at("blob").get<std::string>(),
                                              request.at("dest").get<std::string>(), limits);
      if (!r.ok()) return answer(r.status(), json::object());
      return answer(absl::OkStatus(), {{"diff_id", r->diff_id},
                                       {"size_bytes", r->size_bytes},
                                       {"inodes", r->inodes},
                                       {"stream_bytes", r->stream_bytes}});
    }
    answer(absl::InvalidArgumentError(absl::StrCat("unknown request \"", op, "\"")), json::object());
  } catch (const json::exception& e) {
    answer(absl::InvalidArgumentError(absl::StrCat("bad request: ", e.what())), json::object());
  }
}

}  // namespace berth::image
