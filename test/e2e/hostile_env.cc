#include "test/e2e/hostile_env.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "test/lib/process.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Describe(const std::string& path, bool dir_mtimes) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return "gone";
  std::string d = absl::StrCat("mode=", absl::Hex(st.st_mode), " uid=", st.st_uid,
                               " gid=", st.st_gid, " nlink=", st.st_nlink);
  if (!S_ISDIR(st.st_mode) || dir_mtimes) {
    absl::StrAppend(&d, " mtime=", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
  }
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    absl::StrAppend(&d, " rdev=", major(st.st_rdev), ":", minor(st.st_rdev));
  }
  char names[4096];
  const ssize_t n = ::llistxattr(path.c_str(), names, sizeof names);
  if (n > 0) {
    std::vector<std::string> list = absl::StrSplit(absl::string_view(names, n - 1), '\0');
    std::sort(list.begin(), list.end());
    absl::StrAppend(&d, " xattrs=", absl::StrJoin(list, ","));
  }
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    absl::StrAppend(&d, " -> ", std::filesystem::read_symlink(path, ec).string());
  } else if (S_ISREG(st.st_mode)) {
    absl::StrAppend(&d, " size=", st.st_size);
    if (st.st_size <= (1 << 20)) {
      std::ifstream in(path, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      absl::StrAppend(&d, " content=", Sha256Digest(ss.str()));
    }
  }
  return d;
}

std::string Tail(const std::string& text, size_t bytes = 6000) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

}  // namespace

TreeSnapshot Snapshot(const std::string& root, bool dir_mtimes,
                      const std::vector<std::string>& skip) {
  TreeSnapshot out;
  out["."] = Describe(root, dir_mtimes);
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string path = it->path().string();
    const std::string rel = path.substr(root.size() + 1);
    if (std::any_of(skip.begin(), skip.end(),
                    [&](const std::string& s) { return absl::StartsWith(rel, s); })) {
      continue;
    }
    out[rel] = Describe(path, dir_mtimes);
  }
  if (ec) out["error"] = ec.message();
  return out;
}

std::string ChainId(const std::string& chain, const std::string& diff_id) {
  return Sha256Digest(absl::StrCat(chain, " ", diff_id));
}

void HostileTest::SetUp() {
  if (::geteuid() != 0) GTEST_SKIP() << "berthd runs as root";
  std::string tmpl = "/tmp/berth-hostile-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  victim_ = tmpl;
  ASSERT_EQ(::mkdir((victim_ + "/victimdir").c_str(), 0755), 0);
  std::ofstream(victim_ + "/victim") << "precious";
  std::ofstream(victim_ + "/victimdir/inner") << "inner";
  victim_before_ = Snapshot(victim_);

  auto registry = HostileRegistry::Start();
  ASSERT_TRUE(registry.ok()) << registry.status();
  registry_ = *std::move(registry);
  auto daemon = BerthDaemon::Create(
      {.extra_yaml = absl::StrCat(
           "images:\n", "  registries: [{prefix: \"", registry_->host(), "\", insecure: true}]\n",
           "  stall_timeout: ", kStallSeconds, "s\n", "  pull_timeout: 60s\n",
           "  max_layer_size: ", kMaxLayerSize, "\n", "  max_image_size: ", kMaxImageSize, "\n",
           "  max_layer_entries: ", kMaxLayerEntries, "\n", "  max_path_depth: ", kMaxPathDepth,
           "\n")});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  daemon_ = *std::move(daemon);
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  root_before_ = Snapshot(daemon_->root(), false, {"berth.db"});
}

void HostileTest::TearDown() {
  if (daemon_ != nullptr && daemon_->running()) {
    EXPECT_FALSE(WaitFor(daemon_->pid(), std::chrono::milliseconds(0)).ok())
        << "berthd is gone; log:\n"
        << Tail(daemon_->Log());
    absl::StatusOr<runtime::v1::VersionResponse> version = cri().Version();
    EXPECT_TRUE(version.ok()) << "berthd does not answer: " << version.status();
    // What the case pulled goes; then berthd's tree is as it was.
    absl::StatusOr<runtime::v1::ListImagesResponse> list = cri().ListImages();
    EXPECT_TRUE(list.ok()) << list.status();
    if (list.ok()) {
      for (const runtime::v1::Image& image : list->images()) {
        EXPECT_TRUE(cri().RemoveImage(image.id()).ok());
      }
    }
    EXPECT_EQ(Snapshot(daemon_->root(), false, {"berth.db"}), root_before_)
        << "berthd's root is not as it was";
    // A good image still pulls from the same registry, misbehaviours forgotten.
    registry_->Reset();
    const std::string good =
        ServeImage("good/after",
                   {LayerBuilder()
                        .File("ok", ::testing::UnitTest::GetInstance()->current_test_info()->name())
                        .Build()});
    absl::StatusOr<std::string> id = cri().PullImage(good);
    EXPECT_TRUE(id.ok()) << "a good image no longer pulls: " << id.status();
    if (id.ok()) {
      EXPECT_TRUE(cri().RemoveImage(*id).ok());
    }
    const std::string log = daemon_->Log();
    EXPECT_THAT(log, Not(HasSubstr("AddressSanitizer"))) << Tail(log);
    EXPECT_THAT(log, Not(HasSubstr("runtime error:"))) << Tail(log);
  }
  if (!victim_.empty()) {
    EXPECT_EQ(Snapshot(victim_), victim_before_) << "the victim outside berthd's root changed";
    std::error_code ec;
    std::filesystem::remove_all(victim_, ec);
  }
  daemon_.reset();
  registry_.reset();
}

std::string HostileTest::Ref(const std::string& repo, const std::string& reference) const {
  return absl::StrCat(registry_->host(), "/", repo,
                      absl::StartsWith(reference, "sha256:") ? "@" : ":", reference);
}

std::string HostileTest::ServeImage(const std::string& repo, std::vector<Blob> layers) {
  const BuiltImage image = BuildImage(std::move(layers));
  registry_->Push(repo, "1", image);
  return Ref(repo);
}

std::string HostileTest::ServeManifest(const std::string& repo, const std::string& body,
                                       const std::string& media_type) {
  registry_->SetManifest(repo, "1", media_type, body);
  return Ref(repo);
}

void HostileTest::ExpectRefused(const std::string& ref, absl::StatusCode code,
                                const std::string& says, const runtime::v1::AuthConfig* auth) {
  absl::StatusOr<std::string> pulled = cri().PullImage(ref, auth);
  ASSERT_FALSE(pulled.ok()) << ref << " pulled as " << *pulled;
  std::cout << "refused: " << pulled.status() << "\n";
  EXPECT_EQ(pulled.status().code(), code) << pulled.status();
  EXPECT_THAT(std::string(pulled.status().message()), HasSubstr(says));
  EXPECT_THAT(std::string(pulled.status().message()), HasSubstr(ref))
      << "the error does not name the image";
  absl::StatusOr<runtime::v1::ListImagesResponse> list = cri().ListImages();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->images_size(), 0);
  EXPECT_EQ(Snapshot(daemon_->root(), false, {"berth.db"}), root_before_)
      << "a failed pull left something in berthd's root";
}

std::string HostileTest::ExpectPulled(const std::string& ref, const runtime::v1::AuthConfig* auth) {
  absl::StatusOr<std::string> pulled = cri().PullImage(ref, auth);
  EXPECT_TRUE(pulled.ok()) << pulled.status() << "\n" << Tail(daemon_->Log());
  return pulled.ok() ? *pulled : std::string();
}

std::string HostileTest::LayerDiff(const std::string& chain_id) const {
  return absl::StrCat(daemon_->root(), "/layers/", chain_id.substr(7), "/diff");
}

std::string HostileTest::DotDotToVictim() const {
  std::string up;
  for (int i = 0; i < 16; ++i) up += "../";
  return up + VictimInLayer();
}

}  // namespace berth::testing
