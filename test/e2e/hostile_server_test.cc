// A registry that misbehaves, pulled from by a running berthd: stalls, endless and short bodies,
// server errors, redirects (in loops, to other hosts, to other schemes) and token services that
// lie. Each pull fails with an error naming the problem within its bounds (or succeeds without
// leaking credentials); HostileTest checks that berthd still serves and that nothing is left.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "base/file_util.h"
#include "test/e2e/hostile_env.h"
#include "test/lib/eventually.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using Code = absl::StatusCode;
using Reply = HostileRegistry::Reply;
using Request = HostileRegistry::Request;

constexpr char kRepo[] = "s/case";

class HostileServerTest : public HostileTest {
 protected:
  void SetUp() override {
    HostileTest::SetUp();
    if (registry_ == nullptr) return;
    image_ = BuildImage({RandomLayer(200000, 12).Build()});
    registry_->Push(kRepo, "1", image_);
  }
  std::string ManifestPath() const { return HostileRegistry::ManifestPath(kRepo, "1"); }
  std::string ConfigPath() const { return HostileRegistry::BlobPath(kRepo, image_.config_digest); }
  std::string LayerPath() const {
    return HostileRegistry::BlobPath(kRepo, image_.layers[0].digest);
  }
  const std::string& LayerBytes() const { return image_.layers[0].bytes; }

  // The pull fails as said, and not later than the stall timeout and some slack (a hang would run
  // into the CRI client's deadline instead).
  void RefusedQuickly(Code code, const std::string& says) {
    const auto start = std::chrono::steady_clock::now();
    ExpectRefused(Ref(kRepo), code, says);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(kStallSeconds + 10));
  }

  // Every path of the image answers 401 with `challenge` unless the request has `authorization`.
  void RequireAuthorization(const std::string& authorization, const std::string& challenge) {
    for (const std::string& path : {ManifestPath(), ConfigPath(), LayerPath()}) {
      const std::string body = path == ManifestPath() ? image_.manifest
                               : path == ConfigPath() ? image_.config
                                                      : LayerBytes();
      registry_->On(path, [=](const Request& r) {
        if (r.Header("authorization") == authorization) return Reply{.body = body};
        return Reply{.status = 401, .headers = {{"WWW-Authenticate", challenge}}};
      });
    }
  }
  std::string BearerChallenge() const {
    return absl::StrCat("Bearer realm=\"http://", registry_->host(),
                        "/token\",service=\"hostile\"");
  }

  BuiltImage image_;
};

// --- stalls, endless and short bodies

TEST_F(HostileServerTest, BlobThatStallsHalfwayFailsAfterTheStallTimeout) {
  registry_->On(LayerPath(), Reply{.body = LayerBytes(), .stall_after = LayerBytes().size() / 2});
  RefusedQuickly(Code::kUnavailable, "(images.stall_timeout)");
  EXPECT_EQ(registry_->CountRequests(LayerPath()), 1) << "a stall is not retried";
}

TEST_F(HostileServerTest, ManifestNeverAnsweredFailsAfterTheStallTimeout) {
  registry_->On(ManifestPath(), Reply{.silent = true});
  RefusedQuickly(Code::kUnavailable, "(images.stall_timeout)");
}

// The berth-fetch child of `parent`, or -1.
pid_t FetchHelperOf(pid_t parent) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    absl::StatusOr<std::string> stat = ReadFile(entry.path().string() + "/stat");
    if (!stat.ok() || stat->find("(berth-fetch)") == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat->c_str() + stat->rfind(')') + 2, "%c %d", &state, &ppid) == 2 &&
        ppid == parent) {
      return pid;
    }
  }
  return -1;
}

// Gone, or a zombie: it ran nothing more.
bool Ended(pid_t pid) {
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  return !stat.ok() || stat->find(") Z ") != std::string::npos;
}

// A helper waiting on a registry that never answers does not outlive a berthd killed with
// SIGKILL, and the restarted berthd has nothing of that pull left.
TEST_F(HostileServerTest, AFetchHelperEndsWithAKilledBerthd) {
  registry_->On(ManifestPath(), Reply{.silent = true});
  std::thread pull([this] { (void)cri().PullImage(Ref(kRepo)); });
  pid_t helper = -1;
  Eventually([&] { return (helper = FetchHelperOf(daemon_->pid())) > 0; },
             std::chrono::seconds(kStallSeconds));
  daemon_->Kill();
  pull.join();
  ASSERT_GT(helper, 0) << "no berth-fetch while the manifest was awaited";
  // Well before the stall timeout would end it anyway.
  EXPECT_TRUE(Eventually([&] { return Ended(helper); }, std::chrono::milliseconds(1000)))
      << "berth-fetch " << helper << " outlived berthd";
  ASSERT_TRUE(daemon_->Start().ok());
}

TEST_F(HostileServerTest, ConfigWithHeadersButNoBodyFailsAfterTheStallTimeout) {
  registry_->On(ConfigPath(), Reply{.body = image_.config, .stall_after = 0});
  RefusedQuickly(Code::kUnavailable, "(images.stall_timeout)");
}

TEST_F(HostileServerTest, EndlessBlobIsCutAtItsDescriptorSize) {
  registry_->On(LayerPath(), Reply{.body = LayerBytes(), .content_length = -1, .endless = true});
  RefusedQuickly(Code::kDataLoss,
                 absl::StrCat("more than the ", LayerBytes().size(), " bytes announced"));
}

TEST_F(HostileServerTest, EndlessManifestIsCutAtTheManifestCap) {
  registry_->On(ManifestPath(),
                Reply{.headers = {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}},
                      .body = image_.manifest,
                      .content_length = -1,
                      .endless = true});
  RefusedQuickly(Code::kResourceExhausted, "larger than 4194304 bytes");
}

TEST_F(HostileServerTest, BlobShorterThanItsContentLengthIsRetriedThenRefused) {
  registry_->On(LayerPath(), Reply{.body = LayerBytes().substr(0, LayerBytes().size() / 2),
                                   .content_length = static_cast<int64_t>(LayerBytes().size())});
  RefusedQuickly(Code::kUnavailable, "after 4 attempts");
  EXPECT_EQ(registry_->CountRequests(LayerPath()), 4);
}

// --- server errors

TEST_F(HostileServerTest, ManifestAnswering500IsRetriedThenRefused) {
  registry_->On(ManifestPath(), Reply{.status = 500, .body = "oops"});
  RefusedQuickly(Code::kUnavailable, "HTTP 500 (after 4 attempts)");
  EXPECT_EQ(registry_->CountRequests(ManifestPath()), 4);
}

TEST_F(HostileServerTest, BlobAnswering503IsRetriedThenRefused) {
  registry_->On(LayerPath(), Reply{.status = 503});
  RefusedQuickly(Code::kUnavailable, "HTTP 503 (after 4 attempts)");
}

TEST_F(HostileServerTest, BlobAnswering404IsNotFound) {
  registry_->On(LayerPath(), Reply{.status = 404, .body = R"({"errors":[]})"});
  RefusedQuickly(Code::kNotFound, "blob unknown");
}

TEST_F(HostileServerTest, ManifestAnswering403IsPermissionDenied) {
  registry_->On(ManifestPath(), Reply{.status = 403});
  RefusedQuickly(Code::kPermissionDenied, "access denied");
}

// --- redirects

TEST_F(HostileServerTest, RedirectLoopIsCut) {
  registry_->On(LayerPath(), Reply{.status = 302, .headers = {{"Location", LayerPath()}}});
  RefusedQuickly(Code::kUnavailable, "too many redirects");
  EXPECT_LE(registry_->CountRequests(LayerPath()), 4 * 6);
}

TEST_F(HostileServerTest, RedirectToAFileUrlIsRefused) {
  registry_->On(LayerPath(), Reply{.status = 307, .headers = {{"Location", "file:///etc/shadow"}}});
  RefusedQuickly(Code::kUnavailable, "file");
}

TEST_F(HostileServerTest, RedirectToAnotherHostCarriesNoCredentials) {
  auto storage = HostileRegistry::Start();
  ASSERT_TRUE(storage.ok()) << storage.status();
  (*storage)->SetBlob(image_.layers[0].digest, LayerBytes());
  std::string basic;
  absl::Base64Escape("berth:s3cret", &basic);
  RequireAuthorization("Basic " + basic, "Basic realm=\"hostile\"");
  const std::string target =
      absl::StrCat("http://", (*storage)->host(), "/v2/storage/blobs/", image_.layers[0].digest);
  registry_->On(LayerPath(), [target](const Request& r) {
    if (r.Header("authorization").empty()) {
      return Reply{.status = 401, .headers = {{"WWW-Authenticate", "Basic realm=\"hostile\""}}};
    }
    return Reply{.status = 307, .headers = {{"Location", target}}};
  });
  runtime::v1::AuthConfig auth;
  auth.set_username("berth");
  auth.set_password("s3cret");
  EXPECT_EQ(ExpectPulled(Ref(kRepo), &auth), image_.config_digest);
  ASSERT_GE((*storage)->CountRequests("/v2/storage/blobs/"), 1);
  for (const Request& r : (*storage)->requests()) {
    EXPECT_EQ(r.Header("authorization"), "") << "credentials went to " << (*storage)->host();
  }
  EXPECT_THAT(daemon_->Log(), ::testing::Not(HasSubstr("s3cret")));
}

TEST_F(HostileServerTest, RedirectToTheSameServerUnderAnotherNameCarriesNoCredentials) {
  registry_->On("/token", Reply{.body = R"({"token":"good-token"})"});
  RequireAuthorization("Bearer good-token", BearerChallenge());
  registry_->On(LayerPath(), [this](const Request& r) {
    if (r.Header("authorization") != "Bearer good-token") {
      return Reply{.status = 401, .headers = {{"WWW-Authenticate", BearerChallenge()}}};
    }
    return Reply{
        .status = 307,
        .headers = {{"Location", absl::StrCat("http://localhost:", registry_->port(),
                                              "/v2/elsewhere/blobs/", image_.layers[0].digest)}}};
  });
  EXPECT_EQ(ExpectPulled(Ref(kRepo)), image_.config_digest);
  int elsewhere = 0;
  for (const Request& r : registry_->requests()) {
    if (r.path.rfind("/v2/elsewhere/", 0) != 0) continue;
    ++elsewhere;
    EXPECT_EQ(r.Header("authorization"), "") << "the token went to localhost";
  }
  EXPECT_GE(elsewhere, 1);
}

// --- authentication

TEST_F(HostileServerTest, TokenServiceAnsweringGarbageIsRefused) {
  RequireAuthorization("Bearer good-token", BearerChallenge());
  registry_->On("/token", Reply{.body = "{\"token\": [garbage"});
  RefusedQuickly(Code::kUnavailable, "without a token");
}

TEST_F(HostileServerTest, TokenServiceAnsweringAHugeTokenIsRefused) {
  RequireAuthorization("Bearer good-token", BearerChallenge());
  registry_->On("/token",
                Reply{.body = absl::StrCat("{\"token\":\"", std::string(2 << 20, 'T'), "\"}")});
  RefusedQuickly(Code::kResourceExhausted, "larger than 1048576 bytes");
}

TEST_F(HostileServerTest, TokenServiceNeverAnsweringFailsAfterTheStallTimeout) {
  RequireAuthorization("Bearer good-token", BearerChallenge());
  registry_->On("/token", Reply{.silent = true});
  RefusedQuickly(Code::kUnavailable, "(images.stall_timeout)");
}

TEST_F(HostileServerTest, TokenRealmWithAFileUrlIsRefused) {
  RequireAuthorization("Bearer good-token", "Bearer realm=\"file:///etc/shadow\"");
  RefusedQuickly(Code::kUnavailable, "file");
}

TEST_F(HostileServerTest, UnauthorizedForeverIsUnauthenticated) {
  RequireAuthorization("never", BearerChallenge());
  registry_->On("/token", Reply{.body = R"({"token":"useless","expires_in":"soon"})"});
  RefusedQuickly(Code::kUnauthenticated, "authentication required");
  EXPECT_EQ(registry_->CountRequests("/token"), 1) << "one token per pull, not one per attempt";
}

TEST_F(HostileServerTest, UnauthorizedWithoutAChallengeIsUnauthenticated) {
  registry_->On(ManifestPath(), Reply{.status = 401});
  RefusedQuickly(Code::kUnauthenticated, "authentication required and no credentials were given");
}

}  // namespace
}  // namespace berth::testing
