// CurlRegistryClient against Debian's docker-registry on loopback, and against scripted TCP
// servers for the failure modes a real registry will not produce on demand.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "image/fetch_helper.h"
#include "image/registry.h"
#include "test/fixtures/image_builder.h"
#include "test/fixtures/registry.h"

namespace berth::image {
namespace {

using ::berth::testing::BuildImage;
using ::berth::testing::BuildIndex;
using ::berth::testing::BuiltImage;
using ::berth::testing::LayerBuilder;
using ::berth::testing::TestRegistry;
using ::testing::HasSubstr;

// Accepts connections on a loopback port and hands each, with its request head, to `handler`
// (in the server's thread).
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<void(int fd, int n)> handler)
      : ScriptedServer([handler = std::move(handler)](int fd, int n, const std::string&) {
          handler(fd, n);
        }) {}
  explicit ScriptedServer(std::function<void(int fd, int n, const std::string& request)> handler)
      : handler_(std::move(handler)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 16);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    host_ = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
    thread_ = std::thread([this] {
      for (int n = 0; !stop_; ++n) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) {
          --n;
          continue;
        }
        const int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) continue;
        std::string request;
        if (!ReadRequest(conn, &request)) {
          // A TLS hello (the client tries https first): answer as a plain HTTP server would.
          Send(conn, "HTTP/1.0 400 Bad Request\r\n\r\n");
          ::close(conn);
          --n;
          continue;
        }
        handler_(conn, n, request);
        ::close(conn);
      }
    });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  const std::string& host() const { return host_; }
  bool stopping() const { return stop_; }

  static void Send(int fd, const std::string& data) {
    (void)::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
  }

 private:
  // Reads an HTTP request head; false for anything else (a TLS hello starts with 0x16).
  static bool ReadRequest(int fd, std::string* out) {
    std::string& request = *out;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      request.append(buf, static_cast<size_t>(n));
      if (request[0] == 0x16) return false;
    }
    return true;
  }

  std::function<void(int, int, const std::string&)> handler_;
  int fd_;
  std::string host_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class RegistryClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests run as root";
    if (!testing::RegistryAvailable()) GTEST_SKIP() << "docker-registry is not installed";
    char tmpl[] = "/tmp/berth-registry-client-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  Source At(const std::string& host, const std::string& repo) {
    return Source{host, repo, /*insecure=*/true, false};
  }

  std::string dir_;
  CurlRegistryClient client_{CurlRegistryClient::Options{.stall_timeout = std::chrono::seconds(2),
                                                          .attempts = 3,
                                                          .first_backoff =
                                                              std::chrono::milliseconds(10)}};
};

TEST_F(RegistryClientTest, ManifestsByTagAndDigestAndBlobs) {
  auto registry = TestRegistry::Start();
  ASSERT_TRUE(registry.ok()) << registry.status();
  BuiltImage image = BuildImage({LayerBuilder().File("hello", "world").Build()});
  ASSERT_TRUE((*registry)->Push("team/app", "v1", image).ok());
  const Source source = At((*registry)->host(), "team/app");

  absl::StatusOr<RegistryClient::Manifest> m = client_.GetManifest(source, "v1", {});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->digest, image.manifest_digest);
  EXPECT_EQ(m->media_type, "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(m->body, image.manifest);
  m = client_.GetManifest(source, image.manifest_digest, {});
  ASSERT_TRUE(m.ok()) << m.status();

  absl::StatusOr<RegistryClient::Manifest> missing = client_.GetManifest(source, "v2", {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().ToString(), HasSubstr((*registry)->host() + "/team/app:v2"));

  const std::string path = dir_ + "/blob";
  int64_t last_progress = 0;
  absl::Status fetched =
      client_.FetchBlob(source, image.layers[0].digest,
                        static_cast<int64_t>(image.layers[0].bytes.size()), path, {},
                        [&](int64_t bytes) { last_progress = bytes; });
  ASSERT_TRUE(fetched.ok()) << fetched;
  std::ifstream in(path, std::ios::binary);
  std::string got((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(got, image.layers[0].bytes);
  EXPECT_EQ(last_progress, static_cast<int64_t>(got.size()));

  // A wrong size announced is caught before or at the end of the transfer.
  EXPECT_EQ(client_.FetchBlob(source, image.layers[0].digest, 3, path, {}, {}).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(RegistryClientTest, IndexAndDockerMediaTypes) {
  auto registry = TestRegistry::Start();
  ASSERT_TRUE(registry.ok()) << registry.status();
  BuiltImage image = BuildImage({LayerBuilder().File("x", "y").Build()},
                                {.docker_media_types = true});
  ASSERT_TRUE((*registry)->Push("multi", "", image).ok());
  auto index = BuildIndex({{&image, "linux", "amd64", ""}}, /*docker_media_types=*/true);
  ASSERT_TRUE((*registry)->PushIndex("multi", "latest", index).ok());
  absl::StatusOr<RegistryClient::Manifest> m =
      client_.GetManifest(At((*registry)->host(), "multi"), "latest", {});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->media_type, "application/vnd.docker.distribution.manifest.list.v2+json");
  EXPECT_EQ(m->digest, index.digest);
}

TEST_F(RegistryClientTest, CorruptBlobIsDataLossAndLeavesNoFile) {
  auto registry = TestRegistry::Start();
  ASSERT_TRUE(registry.ok()) << registry.status();
  BuiltImage image = BuildImage({LayerBuilder().File("f", std::string(5000, 'z')).Build()});
  ASSERT_TRUE((*registry)->Push("app", "v1", image).ok());
  ASSERT_TRUE((*registry)->CorruptBlob(image.layers[0].digest).ok());
  const std::string path = dir_ + "/blob";
  absl::Status s = client_.FetchBlob(At((*registry)->host(), "app"), image.layers[0].digest,
                                     static_cast<int64_t>(image.layers[0].bytes.size()), path,
                                     {}, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.ToString(), HasSubstr("digest mismatch"));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(RegistryClientTest, BasicAuth) {
  auto registry = TestRegistry::Start({.basic_auth = true});
  ASSERT_TRUE(registry.ok()) << registry.status();
  BuiltImage image = BuildImage({LayerBuilder().File("secret", "s").Build()});
  ASSERT_TRUE((*registry)->Push("private", "v1", image).ok());
  const Source source = At((*registry)->host(), "private");
  absl::StatusOr<RegistryClient::Manifest> anonymous = client_.GetManifest(source, "v1", {});
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(anonymous.status().ToString(), HasSubstr((*registry)->host()));
  Credentials wrong{.username = "berth", .password = "nope"};
  EXPECT_EQ(client_.GetManifest(source, "v1", wrong).status().code(),
            absl::StatusCode::kUnauthenticated);
  Credentials right{.username = "berth", .password = "s3cret"};
  absl::StatusOr<RegistryClient::Manifest> m = client_.GetManifest(source, "v1", right);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(client_
                  .FetchBlob(source, image.config_digest,
                             static_cast<int64_t>(image.config.size()), dir_ + "/config", right, {})
                  .ok());
}

TEST_F(RegistryClientTest, SecureSourceRefusesPlainHttpWithAHint) {
  auto registry = TestRegistry::Start();
  ASSERT_TRUE(registry.ok()) << registry.status();
  Source secure{(*registry)->host(), "x", /*insecure=*/false, false};
  absl::StatusOr<RegistryClient::Manifest> m = client_.GetManifest(secure, "v1", {});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(m.status().ToString(), HasSubstr("insecure: true"));
}

TEST_F(RegistryClientTest, StalledServerFailsButATrickleSucceeds) {
  std::atomic<int> connections{0};
  ScriptedServer stalled([&](int fd, int) {
    (void)fd;  // never answers; closes when the client gives up
    ++connections;
    std::this_thread::sleep_for(std::chrono::seconds(4));
  });
  CurlRegistryClient once(CurlRegistryClient::Options{.stall_timeout = std::chrono::seconds(1),
                                                      .attempts = 3});
  absl::StatusOr<RegistryClient::Manifest> m = once.GetManifest(At(stalled.host(), "x"), "v1", {});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnavailable) << m.status();
  EXPECT_THAT(m.status().message(), HasSubstr("no data for 1 s"));
  // A stall is not retried: three attempts would hold the pull three stall timeouts.
  EXPECT_EQ(connections.load(), 1);

  const std::string body = "trickle";
  ScriptedServer trickle([&](int fd, int) {
    ScriptedServer::Send(fd, absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", body.size(),
                                          "\r\nConnection: close\r\n\r\n"));
    for (char c : body) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ScriptedServer::Send(fd, std::string(1, c));
    }
  });
  // Each byte comes well within the 1 s stall limit, the whole takes longer than it.
  absl::Status s = once.FetchBlob(At(trickle.host(), "x"), testing::Sha256Digest(body),
                                  static_cast<int64_t>(body.size()), dir_ + "/trickle", {}, {});
  EXPECT_TRUE(s.ok()) << s;
}

TEST_F(RegistryClientTest, TheStopCheckEndsATransferAndTheRetries) {
  ScriptedServer stalled([](int fd, int) {
    (void)fd;
    std::this_thread::sleep_for(std::chrono::seconds(4));
  });
  std::atomic<int> asked{0};
  const StopCheck stop = [&]() -> absl::Status {
    return ++asked > 2 ? absl::CancelledError("the caller went away") : absl::OkStatus();
  };
  absl::StatusOr<RegistryClient::Manifest> m =
      client_.GetManifest(At(stalled.host(), "x"), "v1", {}, stop);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kCancelled) << m.status();
  EXPECT_THAT(m.status().message(), HasSubstr("the caller went away"));

  ScriptedServer down([](int fd, int) {
    ScriptedServer::Send(fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n");
  });
  CurlRegistryClient patient(CurlRegistryClient::Options{
      .attempts = 10, .first_backoff = std::chrono::milliseconds(500)});
  asked = 0;
  absl::Status s = patient.FetchBlob(At(down.host(), "x"), testing::Sha256Digest("x"), 1,
                                     dir_ + "/stopped", {}, {}, stop);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/stopped"));
}

TEST_F(RegistryClientTest, TransientErrorsAreRetried) {
  const std::string body = "retried";
  ScriptedServer flaky([&](int fd, int n) {
    if (n < 2) {
      ScriptedServer::Send(fd, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n");
      return;
    }
    ScriptedServer::Send(fd, absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", body.size(),
                                          "\r\nConnection: close\r\n\r\n", body));
  });
  absl::Status s = client_.FetchBlob(At(flaky.host(), "x"), testing::Sha256Digest(body),
                                     static_cast<int64_t>(body.size()), dir_ + "/retried", {}, {});
  EXPECT_TRUE(s.ok()) << s;

  ScriptedServer down([](int fd, int) {
    ScriptedServer::Send(fd, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n");
  });
  s = client_.FetchBlob(At(down.host(), "x"), testing::Sha256Digest(body),
                        static_cast<int64_t>(body.size()), dir_ + "/down", {}, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.ToString(), HasSubstr("after 3 attempts"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/down"));
}

// The value of header `name` (lower case) in a request head, "" if absent.
std::string RequestHeader(const std::string& request, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(request, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon != absl::string_view::npos &&
        absl::AsciiStrToLower(line.substr(0, colon)) == name) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return "";
}

void Answer(int fd, const std::string& status, const std::string& headers, const std::string& body) {
  ScriptedServer::Send(fd, absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Length: ", body.size(),
                                        "\r\nConnection: close\r\n", headers, "\r\n", body));
}

constexpr char kEmptyManifest[] = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]})";

// A registry whose token service hands each caller a token of its own (valid `expires_in`
// seconds): alice's token reads the manifest, an anonymous one does not. `*host` is the server's,
// set once it listens; `token_requests` counts the token service's answers.
std::function<void(int, int, const std::string&)> AliceOnlyRegistry(
    const std::string* host, const std::string& expires_in, std::atomic<int>* token_requests) {
  return [=](int fd, int, const std::string& request) {
    const std::string auth = RequestHeader(request, "authorization");
    if (absl::StartsWith(request, "GET /token")) {
      ++*token_requests;
      std::string alice;
      absl::Base64Escape("alice:pw", &alice);
      const std::string token = auth == "Basic " + alice ? "tok-alice" : "tok-anon";
      Answer(fd, "200 OK", "Content-Type: application/json\r\n",
             absl::StrCat(R"({"token":")", token, R"(","expires_in":)", expires_in, "}"));
      return;
    }
    if (auth == "Bearer tok-alice") {
      Answer(fd, "200 OK", "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
             kEmptyManifest);
      return;
    }
    Answer(fd, "401 Unauthorized",
           absl::StrCat(R"(WWW-Authenticate: Bearer realm="http://)", *host,
                        R"(/token",service="s",scope="repository:repo:pull")", "\r\n"),
           R"({"errors":[{"code":"UNAUTHORIZED","message":{"not":"a string"}}]})");
  };
}

// A cached token must never cross from one caller's credentials to another's.
TEST_F(RegistryClientTest, TokensAreNotSharedAcrossCredentials) {
  std::string host;
  std::atomic<int> token_requests{0};
  ScriptedServer server(AliceOnlyRegistry(&host, R"("soon")", &token_requests));
  host = server.host();
  const Source source = At(server.host(), "repo");
  Credentials alice{.username = "alice", .password = "pw"};
  absl::StatusOr<RegistryClient::Manifest> m = client_.GetManifest(source, "v1", alice);
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<RegistryClient::Manifest> anonymous = client_.GetManifest(source, "v1", {});
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated) << anonymous.status();
  Credentials bob{.username = "bob", .password = "pw"};
  EXPECT_EQ(client_.GetManifest(source, "v1", bob).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(client_.GetManifest(source, "v1", alice).ok());
}

// berth-fetch runs one request per process: what one helper learnt (the token, that the host
// speaks plain HTTP) reaches the next, so a pull does not fetch a token per blob. Tokens stay
// keyed by credentials.
TEST_F(RegistryClientTest, BerthFetchHelpersPassOnTokensAndSchemes) {
  std::string host;
  std::atomic<int> token_requests{0};
  ScriptedServer server(AliceOnlyRegistry(&host, "300", &token_requests));
  host = server.host();
  FetchHelperClient helpers({.path = BERTH_FETCH_PATH, .stall_timeout = std::chrono::seconds(5)});
  const Source source = At(server.host(), "repo");
  const Credentials alice{.username = "alice", .password = "pw"};
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<RegistryClient::Manifest> m = helpers.GetManifest(source, "v1", alice);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->body, kEmptyManifest);
  }
  EXPECT_EQ(token_requests.load(), 1);
  EXPECT_EQ(helpers.Remembered().schemes.at(server.host()), "http");
  // Another caller's credentials get no use of alice's token.
  EXPECT_EQ(helpers.GetManifest(source, "v1", {}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(token_requests.load(), 2);
}

}  // namespace
}  // namespace berth::image
