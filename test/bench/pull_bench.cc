// Cold pull of a ~100 MB, 4-layer image from Debian's docker-registry on loopback: berth's puller
// (download, verify, unpack, record) beside `skopeo copy` of the same image to a directory
// (download and verify only), in the same run. Prints the figures and their ratio.
//
// Usage (root): berth_pull_bench [total MiB, default 100] [runs, default 3]

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/sqlite.h"
#include "image/puller.h"
#include "image/unpack.h"
#include "test/fixtures/image_builder.h"
#include "test/fixtures/registry.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string TempDir(const char* name) {
  std::string path = absl::StrCat("/tmp/", name, ".XXXXXX");
  if (::mkdtemp(path.data()) == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  return path;
}

double BerthPull(const std::string& ref, const std::string& host) {
  const std::string root = TempDir("berth-bench-root");
  auto db = berth::SqliteDb::Open(root + "/berth.db");
  auto store = berth::image::ImageStore::Open(db->get(), root, {});
  berth::config::Config config;
  config.images.registries = {{.prefix = host, .insecure = true}};
  berth::image::CurlRegistryClient client;
  berth::image::ImagePuller puller(
      store->get(), &client, [&] { return std::make_shared<const berth::config::Config>(config); },
      berth::image::UnpackLayer);
  const Clock::time_point start = Clock::now();
  absl::StatusOr<berth::image::PullResult> result = puller.Pull(ref, std::nullopt);
  const double seconds = Seconds(start);
  if (!result.ok()) {
    std::fprintf(stderr, "berth pull failed: %s\n", result.status().ToString().c_str());
    std::exit(1);
  }
  store->reset();
  db->reset();
  std::filesystem::remove_all(root);
  return seconds;
}

double SkopeoCopy(const std::string& ref) {
  const std::string dir = TempDir("berth-bench-skopeo");
  const std::string command =
      absl::StrCat("skopeo copy --quiet --src-tls-verify=false docker://", ref, " dir:", dir,
                   "/image >/dev/null");
  const Clock::time_point start = Clock::now();
  const int rc = std::system(command.c_str());
  const double seconds = Seconds(start);
  std::filesystem::remove_all(dir);
  if (rc != 0) {
    std::fprintf(stderr, "skopeo copy failed (%d)\n", rc);
    std::exit(1);
  }
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 3;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "berth_pull_bench: run as root (layers are unpacked as root)\n");
    return 1;
  }
  auto registry = berth::testing::TestRegistry::Start();
  if (!registry.ok()) {
    std::fprintf(stderr, "registry: %s\n", registry.status().ToString().c_str());
    return 1;
  }
  std::vector<berth::testing::Blob> layers;
  for (uint32_t i = 0; i < 4; ++i) {
    layers.push_back(berth::testing::RandomLayer(mib * (1 << 20) / 4, i + 1)
                         .Build(berth::testing::Compression::kGzip));
  }
  const auto image = berth::testing::BuildImage(std::move(layers));
  if (absl::Status s = (*registry)->Push("bench", "1", image); !s.ok()) {
    std::fprintf(stderr, "push: %s\n", s.ToString().c_str());
    return 1;
  }
  const std::string ref = (*registry)->host() + "/bench:1";
  std::printf("image: %zu MiB in 4 gzip layers, %d cold runs each\n", mib, runs);
  double berth_total = 0, skopeo_total = 0;
  for (int run = 0; run < runs; ++run) {
    const double b = BerthPull(ref, (*registry)->host());
    const double s = SkopeoCopy(ref);
    std::printf("run %d: berth pull %.3f s, skopeo copy %.3f s\n", run + 1, b, s);
    berth_total += b;
    skopeo_total += s;
  }
  std::printf("mean: berth pull %.3f s, skopeo copy %.3f s, ratio berth/skopeo %.2f\n",
              berth_total / runs, skopeo_total / runs, berth_total / skopeo_total);
  return 0;
}
