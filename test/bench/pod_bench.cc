// Pod and container start latency through the CRI, and memory use, of a real berthd (the staged
// install named by $BERTHD, with runc, overlayfs, the CNI bridge and a busybox image from a
// registry on loopback):
//   1. N pods one after another: RunPodSandbox, CreateContainer, StartContainer, and the whole
//      start, median and p99 per step; then StopPodSandbox + RemovePodSandbox.
//   2. M pods started concurrently: the same figures.
//   3. K running pods (one container each): berthd's RSS, and the monitors' RSS per container,
//      with berth-conmon and with Debian's conmon side by side.
// When containerd is installed (not a dependency of berth), its figures are not measured here
// yet; the ratios are printed against conmon as berth's own baseline.
//
// Usage (root): [RUNTIME=crun] BERTHD=.../bin/berthd berth_pod_bench [N=20] [M=10] [K=50]
// (RUNTIME: the runtime handler pods use, runc by default.)

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "test/fixtures/image_builder.h"
#include "test/fixtures/registry.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/http.h"
#include "test/lib/process.h"

namespace {

using berth::testing::BerthDaemon;
using berth::testing::CriClient;
using runtime::v1::RuntimeService;
using Clock = std::chrono::steady_clock;

constexpr char kBridge[] = "berthbench0";

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

class Bench;
// What a failure must not leave behind: the registry, and the pods of the running bench.
std::unique_ptr<berth::testing::TestRegistry> g_registry;
std::atomic<Bench*> g_bench = nullptr;

[[noreturn]] void Die(const std::string& what);

struct Timings {
  std::map<std::string, std::vector<double>> steps;
  std::mutex mu;
  void Add(const std::string& step, double ms) {
    std::lock_guard<std::mutex> lock(mu);
    steps[step].push_back(ms);
  }
  void Print(const char* title) {
    std::printf("%s\n", title);
    for (const char* step : {"RunPodSandbox", "CreateContainer", "StartContainer", "total"}) {
      std::vector<double>& v = steps[step];
      if (v.empty()) continue;
      std::sort(v.begin(), v.end());
      const double median = v[v.size() / 2];
      const double p99 = v[std::min(v.size() - 1, (v.size() * 99) / 100)];
      std::printf("  %-16s median %7.1f ms   p99 %7.1f ms   (n=%zu)\n", step, median, p99, v.size());
    }
  }
};

class Bench {
 public:
  Bench(std::unique_ptr<BerthDaemon> daemon, std::string image)
      : daemon_(std::move(daemon)), image_(std::move(image)) {
    g_bench = this;
  }
  // Removes every pod it still has; then BerthDaemon stops berthd and removes its tree.
  ~Bench() {
    g_bench = nullptr;
    RemoveAll();
  }
  void RemoveAll() {
    if (!daemon_) return;
    auto pods = cri().Call(&RuntimeService::Stub::ListPodSandbox,
                           runtime::v1::ListPodSandboxRequest());
    if (!pods.ok()) return;
    for (const auto& p : pods->items()) {
      runtime::v1::RemovePodSandboxRequest remove;
      remove.set_pod_sandbox_id(p.id());
      (void)cri().Call(&RuntimeService::Stub::RemovePodSandbox, remove);
    }
  }
  // On a failure: the pods, then berthd and its tree.
  void Abandon() {
    RemoveAll();
    daemon_.reset();
  }
  CriClient& cri() { return daemon_->client(); }
  BerthDaemon& daemon() { return *daemon_; }

  runtime::v1::PodSandboxConfig Pod(int i) {
    runtime::v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name(absl::StrCat("bench-", i));
    c.mutable_metadata()->set_namespace_("bench");
    c.mutable_metadata()->set_uid(absl::StrCat("uid-", i));
    c.set_hostname(absl::StrCat("bench-", i));
    c.set_log_directory(absl::StrCat(daemon_->dir(), "/logs/", i));
    return c;
  }

  // Starts pod i with one sleeping container; returns the pod id.
  std::string Start(int i, Timings* t) {
    const Clock::time_point t0 = Clock::now();
    runtime::v1::RunPodSandboxRequest run;
    *run.mutable_config() = Pod(i);
    auto pod = cri().Call(&RuntimeService::Stub::RunPodSandbox, run);
    if (!pod.ok()) Die(absl::StrCat("RunPodSandbox: ", pod.status().ToString()));
    const Clock::time_point t1 = Clock::now();
    runtime::v1::CreateContainerRequest create;
    create.set_pod_sandbox_id(pod->pod_sandbox_id());
    *create.mutable_sandbox_config() = run.config();
    create.mutable_config()->mutable_metadata()->set_name("main");
    create.mutable_config()->mutable_image()->set_image(image_);
    create.mutable_config()->add_command("sleep");
    create.mutable_config()->add_command("100000");
    create.mutable_config()->set_log_path("main.log");
    auto ctr = cri().Call(&RuntimeService::Stub::CreateContainer, create);
    if (!ctr.ok()) Die(absl::StrCat("CreateContainer: ", ctr.status().ToString()));
    const Clock::time_point t2 = Clock::now();
    runtime::v1::StartContainerRequest start;
    start.set_container_id(ctr->container_id());
    auto started = cri().Call(&RuntimeService::Stub::StartContainer, start);
    if (!started.ok()) Die(absl::StrCat("StartContainer: ", started.status().ToString()));
    const Clock::time_point t3 = Clock::now();
    if (t != nullptr) {
      t->Add("RunPodSandbox", Ms(t0, t1));
      t->Add("CreateContainer", Ms(t1, t2));
      t->Add("StartContainer", Ms(t2, t3));
      t->Add("total", Ms(t0, t3));
    }
    return pod->pod_sandbox_id();
  }

  void Remove(const std::string& pod) {
    runtime::v1::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(pod);
    (void)cri().Call(&RuntimeService::Stub::StopPodSandbox, stop);
    runtime::v1::RemovePodSandboxRequest remove;
    remove.set_pod_sandbox_id(pod);
    if (!cri().Call(&RuntimeService::Stub::RemovePodSandbox, remove).ok()) Die("RemovePodSandbox");
  }

 private:
  std::unique_ptr<BerthDaemon> daemon_;
  std::string image_;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "pod bench: %s\n", what.c_str());
  static std::once_flag once;
  std::call_once(once, [] {
    if (Bench* bench = g_bench.exchange(nullptr)) bench->Abandon();
    g_registry.reset();
    berth::testing::RunCommand({"/usr/sbin/ip", "link", "del", kBridge}).IgnoreError();
  });
  std::exit(1);
}

// Where berthd's time went, step by step: the mean of each berth_operation_step_duration_seconds
// series (sum / count) from its /metrics, in flow order as the metrics list them.
void PrintSteps(const std::string& metrics_address) {
  absl::StatusOr<berth::testing::HttpResponse> got =
      berth::testing::HttpGet(metrics_address, "/metrics");
  if (!got.ok() || got->status != 200) Die("scrape berthd's metrics");
  std::map<std::string, double> sums;
  std::map<std::string, double> counts;
  std::vector<std::string> order;
  std::istringstream lines(got->body);
  for (std::string line; std::getline(lines, line);) {
    constexpr absl::string_view kSum = "berth_operation_step_duration_seconds_sum{";
    constexpr absl::string_view kCount = "berth_operation_step_duration_seconds_count{";
    const bool sum = absl::StartsWith(line, kSum);
    if (!sum && !absl::StartsWith(line, kCount)) continue;
    const size_t close = line.find('}');
    if (close == std::string::npos) continue;
    const size_t open = (sum ? kSum : kCount).size();
    const std::string labels = line.substr(open, close - open);
    const double value = std::atof(line.c_str() + close + 1);
    if (sum) {
      if (!sums.count(labels)) order.push_back(labels);
      sums[labels] = value;
    } else {
      counts[labels] = value;
    }
  }
  std::printf("berthd's steps (mean ms over every call so far):\n");
  for (const std::string& labels : order) {
    if (counts[labels] == 0) continue;
    std::printf("  %-60s %7.2f  (n=%.0f)\n", labels.c_str(), 1000 * sums[labels] / counts[labels],
                counts[labels]);
  }
}

long RssKb(pid_t pid) { return berth::testing::ProcStatusField(pid, "VmRSS"); }

// RSS of the monitor processes of this daemon's containers (their command lines name its dir).
std::vector<long> MonitorRss(const std::string& dir) {
  std::vector<long> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find("conmon") != std::string::npos && cmdline.find(dir) != std::string::npos &&
        cmdline.find("/containers/") != std::string::npos) {
      out.push_back(RssKb(std::stoi(name)));
    }
  }
  return out;
}

std::unique_ptr<Bench> Setup(const std::string& registry_host, const std::string& monitor) {
  std::string yaml = absl::StrCat("images:\n  registries:\n    - {prefix: \"", registry_host,
                                  "\", insecure: true}\n");
  if (!monitor.empty()) absl::StrAppend(&yaml, "monitor: {path: ", monitor, "}\n");
  if (const char* runtime = std::getenv("RUNTIME"); runtime != nullptr && *runtime != '\0') {
    absl::StrAppend(&yaml, "default_runtime: ", runtime, "\n");
  }
  auto daemon = BerthDaemon::Create({.extra_yaml = yaml, .log_level = "warn"});
  if (!daemon.ok()) Die(daemon.status().ToString());
  if (!berth::WriteFileAtomic(
           (*daemon)->cni_dir() + "/10-bench.conflist",
           absl::StrCat(R"({"cniVersion": "1.0.0", "name": "bench", "plugins": [
      {"type": "bridge", "bridge": ")", kBridge, R"(", "isGateway": true, "ipMasq": false,
       "ipam": {"type": "host-local", "dataDir": ")", (*daemon)->dir(), R"(/ipam",
                "ranges": [[{"subnet": "10.250.0.0/16"}]]}}, {"type": "loopback"}]})"))
           .ok()) {
    Die("write the CNI config");
  }
  if (absl::Status s = (*daemon)->Start(); !s.ok()) Die(s.ToString());
  const std::string image = registry_host + "/busybox:bench";
  if (!(*daemon)->client().PullImage(image).ok()) Die("pull");
  return std::make_unique<Bench>(*std::move(daemon), image);
}

void Memory(const std::string& host, const std::string& monitor, int k, const char* label) {
  std::unique_ptr<Bench> bench = Setup(host, monitor);
  std::vector<std::string> pods;
  for (int i = 0; i < k; ++i) pods.push_back(bench->Start(i, nullptr));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const long daemon_kb = RssKb(bench->daemon().pid());
  std::vector<long> monitors = MonitorRss(bench->daemon().dir());
  long sum = 0;
  for (long kb : monitors) sum += kb;
  std::printf("%d running pods, monitor %s:\n", k, label);
  std::printf("  berthd RSS %8.1f MiB\n", daemon_kb / 1024.0);
  if (!monitors.empty()) {
    std::printf("  monitor RSS per container %6.0f KiB (%zu monitors)\n",
                static_cast<double>(sum) / monitors.size(), monitors.size());
  }
  for (const std::string& pod : pods) bench->Remove(pod);
}

}  // namespace

int main(int argc, char** argv) {
  if (::geteuid() != 0) Die("needs root");
  const int n = argc > 1 ? std::atoi(argv[1]) : 20;
  const int m = argc > 2 ? std::atoi(argv[2]) : 10;
  const int k = argc > 3 ? std::atoi(argv[3]) : 50;
  auto registry = berth::testing::TestRegistry::Start();
  if (!registry.ok()) Die(registry.status().ToString());
  g_registry = *std::move(registry);
  const std::string host = g_registry->host();
  berth::testing::ImageSpec spec;
  spec.cmd = {"sh"};
  if (!g_registry->Push("busybox", "bench", berth::testing::BuildImage(
                                                {berth::testing::BusyboxLayer().Build()}, spec))
           .ok()) {
    Die("push");
  }
  {
    std::unique_ptr<Bench> bench = Setup(host, "");
    bench->Remove(bench->Start(1000, nullptr));  // warm caches
    Timings sequential;
    for (int i = 0; i < n; ++i) bench->Remove(bench->Start(i, &sequential));
    sequential.Print(absl::StrCat(n, " pods one after another (pod + 1 container):").c_str());
    PrintSteps(bench->daemon().metrics_address());
    Timings concurrent;
    std::vector<std::string> pods(m);
    std::vector<std::thread> threads;
    for (int i = 0; i < m; ++i) {
      threads.emplace_back([&, i] { pods[i] = bench->Start(100 + i, &concurrent); });
    }
    for (std::thread& t : threads) t.join();
    concurrent.Print(absl::StrCat(m, " pods started concurrently:").c_str());
    for (const std::string& pod : pods) bench->Remove(pod);
  }
  Memory(host, "", k, "berth-conmon");
  if (::access("/usr/bin/conmon", X_OK) == 0) Memory(host, "/usr/bin/conmon", k, "Debian conmon");
  if (::access("/usr/bin/containerd", X_OK) == 0) {
    std::printf("containerd is installed, but this bench does not drive it yet\n");
  } else {
    std::printf("containerd is not installed: no side-by-side figures\n");
  }
  g_registry.reset();
  berth::testing::RunCommand({"/usr/sbin/ip", "link", "del", kBridge}).IgnoreError();
  return 0;
}
