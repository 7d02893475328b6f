// FetchHelperClient with the real berth-fetch, against Debian's docker-registry on loopback: the
// same answers and errors as the in-process client and unpacker, and a helper that is stopped
// leaves neither a process nor a file.

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "image/fetch_helper.h"
#include "image/registry.h"
#include "image/unpack.h"
#include "test/fixtures/image_builder.h"
#include "test/fixtures/registry.h"

namespace berth::image {
namespace {

using ::berth::testing::BuildImage;
using ::berth::testing::BuiltImage;
using ::berth::testing::LayerBuilder;
using ::berth::testing::TestRegistry;
using ::testing::HasSubstr;

// Children of this process that run berth-fetch.
int FetchHelpersAlive() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    absl::StatusOr<std::string> stat = ReadFile(entry.path().string() + "/stat");
    if (!stat.ok() || stat->find("(berth-fetch)") == std::string::npos) continue;
    const size_t close = stat->rfind(')');
    int ppid = 0;
    char state = 0;
    if (std::sscanf(stat->c_str() + close + 2, "%c %d", &state, &ppid) == 2 && ppid == ::getpid()) {
      ++n;
    }
  }
  return n;
}

class FetchHelperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests run as root";
    if (!testing::RegistryAvailable()) GTEST_SKIP() << "docker-registry is not installed";
    char tmpl[] = "/tmp/berth-fetch-helper-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
    EXPECT_EQ(FetchHelpersAlive(), 0);
  }

  static Source At(const std::string& host, const std::string& repo) {
    return Source{host, repo, /*insecure=*/true, false};
  }

  std::string dir_;
  FetchHelperClient helper_{{.path = BERTH_FETCH_PATH, .stall_timeout = std::chrono::seconds(5)}};
  CurlRegistryClient direct_{CurlRegistryClient::Options{.stall_timeout = std::chrono::seconds(5)}};
};

TEST_F(FetchHelperTest, AnswersAsTheInProcessClientAndUnpackerDo) {
  auto registry = TestRegistry::Start();
  ASSERT_TRUE(registry.ok()) << registry.status();
  BuiltImage image = BuildImage(
      {LayerBuilder().File("hello", "world").Dir("etc").File("etc/x", "y", 0600, 7, 8).Build()});
  ASSERT_TRUE((*registry)->Push("team/app", "v1", image).ok());
  const Source source = At((*registry)->host(), "team/app");

  absl::StatusOr<RegistryClient::Manifest> via = helper_.GetManifest(source, "v1", {});
  ASSERT_TRUE(via.ok()) << via.status();
  absl::StatusOr<RegistryClient::Manifest> direct = direct_.GetManifest(source, "v1", {});
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(via->body, image.manifest);
  EXPECT_EQ(via->body, direct->body);
  EXPECT_EQ(via->digest, direct->digest);
  EXPECT_EQ(via->media_type, direct->media_type);

  // Credentials that are not UTF-8 cannot be encoded as they are: a refusal, not a crash.
  absl::StatusOr<RegistryClient::Manifest> odd =
      helper_.GetManifest(source, "v1", {.username = "\xff\xfe", .password = "\xc3"});
  EXPECT_TRUE(odd.ok() || odd.status().code() != absl::StatusCode::kInternal) << odd.status();

  // Errors keep their code and message.
  absl::StatusOr<RegistryClient::Manifest> missing = helper_.GetManifest(source, "v2", {});
  absl::StatusOr<RegistryClient::Manifest> missing_direct = direct_.GetManifest(source, "v2", {});
  EXPECT_EQ(missing.status(), missing_direct.status());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  const std::string blob = dir_ + "/blob";
  const int64_t size = static_cast<int64_t>(image.layers[0].bytes.size());
  ASSERT_TRUE(helper_.FetchBlob(source, image.layers[0].digest, size, blob, {}, {}).ok());
  std::ifstream in(blob, std::ios::binary);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in)), {}), image.layers[0].bytes);
  absl::Status wrong_size = helper_.FetchBlob(source, image.layers[0].digest, 3, dir_ + "/b2", {}, {});
  EXPECT_EQ(wrong_size.code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/b2"));

  ASSERT_TRUE(MakeDirs(dir_ + "/via").ok());
  ASSERT_TRUE(MakeDirs(dir_ + "/direct").ok());
  absl::StatusOr<UnpackResult> u = helper_.Unpack(blob, dir_ + "/via", {});
  ASSERT_TRUE(u.ok()) << u.status();
  absl::StatusOr<UnpackResult> d = UnpackLayer(blob, dir_ + "/direct", {});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(u->diff_id, image.layers[0].diff_id);
  EXPECT_EQ(u->diff_id, d->diff_id);
  EXPECT_EQ(u->size_bytes, d->size_bytes);
  EXPECT_EQ(u->inodes, d->inodes);
  EXPECT_EQ(u->stream_bytes, d->stream_bytes);
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/via/etc/x").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 7u);
  EXPECT_EQ(st.st_gid, 8u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(FetchHelperTest, HostileLayersFailAsInProcess) {
  const std::string blob = dir_ + "/evil";
  {
    std::ofstream out(blob, std::ios::binary);
    out << LayerBuilder().File("../escape", "x").Build().bytes;
  }
  ASSERT_TRUE(MakeDirs(dir_ + "/via").ok());
  ASSERT_TRUE(MakeDirs(dir_ + "/direct").ok());
  absl::StatusOr<UnpackResult> via = helper_.Unpack(blob, dir_ + "/via", {});
  absl::StatusOr<UnpackResult> direct = UnpackLayer(blob, dir_ + "/direct", {});
  ASSERT_FALSE(via.ok());
  EXPECT_EQ(via.status(), direct.status());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/escape"));

  // Not a layer at all.
  {
    std::ofstream out(blob, std::ios::binary | std::ios::trunc);
    out << "\x1f\x8b garbage that is no gzip stream";
  }
  via = helper_.Unpack(blob, dir_ + "/via", {});
  EXPECT_EQ(via.status().code(), absl::StatusCode::kInvalidArgument) << via.status();
}

TEST_F(FetchHelperTest, TheImageBudgetCountsEveryLayerOfTheImage) {
  const std::string blob = dir_ + "/big";
  const testing::Blob built = testing::RandomLayer(12 << 20, 42).Build();
  {
    std::ofstream out(blob, std::ios::binary);
    out << built.bytes;
  }
  std::atomic<int64_t> image_bytes{0};
  UnpackLimits limits;
  limits.image_bytes = &image_bytes;
  limits.max_image_bytes = 20 << 20;
  ASSERT_TRUE(MakeDirs(dir_ + "/one").ok());
  absl::StatusOr<UnpackResult> one = helper_.Unpack(blob, dir_ + "/one", limits);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(image_bytes.load(), one->stream_bytes);
  // The same layer again does not fit in what is left.
  ASSERT_TRUE(MakeDirs(dir_ + "/two").ok());
  absl::StatusOr<UnpackResult> two = helper_.Unpack(blob, dir_ + "/two", limits);
  EXPECT_EQ(two.status().code(), absl::StatusCode::kResourceExhausted) << two.status();
  EXPECT_THAT(two.status().message(), HasSubstr("images.max_image_size"));
}

TEST_F(FetchHelperTest, AStopEndsTheHelperAndLeavesNoFile) {
  // A server that takes the connection and never answers.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const Source source = At(absl::StrCat("127.0.0.1:", ntohs(addr.sin_port)), "app");

  const auto start = std::chrono::steady_clock::now();
  const std::string blob = dir_ + "/blob";
  absl::Status s = helper_.FetchBlob(
      source, "sha256:" + std::string(64, 'a'), 10, blob, {}, {}, [&]() -> absl::Status {
        if (std::chrono::steady_clock::now() - start > std::chrono::milliseconds(300)) {
          return absl::CancelledError("the caller went away");
        }
        return absl::OkStatus();
      });
  EXPECT_EQ(s, absl::CancelledError("the caller went away"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));  // not the stall
  EXPECT_FALSE(std::filesystem::exists(blob));
  EXPECT_EQ(FetchHelpersAlive(), 0);
}

TEST_F(FetchHelperTest, AMissingOrBrokenHelperIsAnInternalError) {
  FetchHelperClient missing({.path = dir_ + "/no-such-helper"});
  EXPECT_EQ(missing.GetManifest(At("127.0.0.1:1", "x"), "v1", {}).status().code(),
            absl::StatusCode::kInternal);
  // A "helper" that answers something else than the protocol.
  const std::string liar = dir_ + "/liar";
  ASSERT_TRUE(WriteFileAtomic(liar, "#!/bin/sh\necho '{\"no\": 1}'\n", 0755).ok());
  FetchHelperClient lying({.path = liar});
  absl::StatusOr<RegistryClient::Manifest> m = lying.GetManifest(At("127.0.0.1:1", "x"), "v1", {});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInternal) << m.status();
  const std::string quiet = dir_ + "/quiet";
  ASSERT_TRUE(WriteFileAtomic(quiet, "#!/bin/sh\nexit 3\n", 0755).ok());
  FetchHelperClient silent({.path = quiet});
  m = silent.GetManifest(At("127.0.0.1:1", "x"), "v1", {});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(m.status().message(), HasSubstr("exit code 3"));
}

}  // namespace
}  // namespace berth::image
