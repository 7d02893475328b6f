// Pod and container start latency through the CRI, and memory use, of a real berthd (the staged
// install named by $BERTHD, with runc, overlayfs, the CNI bridge and a busybox image from a
// registry on loopback), side by side with containerd when Debian's containerd is installed
// (started by the bench with a root, state, socket and CNI config of its own; the same workload,
// the same bridge and host-local config, runc under both):
//   1. N pods one after another: RunPodSandbox, CreateContainer, StartContainer, the whole start,
//      an ExecSync of `true`, StopPodSandbox and RemovePodSandbox, median and p99 per step;
//      berthd's own steps (from its berth_operation_step_duration_seconds metrics).
//   2. M pods started concurrently (two rounds with containerd): the same figures.
//   Steps 1 and 2 alternate between the two runtimes in turns (MeasureSideBySide).
//   3. K running pods (P containers each): the daemon's RSS, PSS and anonymous RSS, and the
//      monitors' (or shims') number, RSS and PSS; for berth with berth-conmon (one per pod, its
//      default, and one per container) and with Debian's conmon. Also the time to start the K
//      pods one after another, and to stop and remove them all.
//   4. Scale: S pods started at once, then C containers running in each; kubelet's reads over
//      them (ListContainers, ListPodSandbox, ContainerStatus, ListContainerStats), timed by the
//      client and, for berth, by berthd's own latency metrics.
// Then each berth figure over containerd's. Every call is a direct gRPC call: no crictl start-up.
//
// Usage (root): [RUNTIME=crun] [CONTAINERD=0] BERTHD=.../bin/berthd berth_pod_bench [N=20] [M=10]
//               [K=50] [S=100] [C=5] [P=2]   (S=0 skips the scale run)
// (RUNTIME: the runtime handler berth's pods use, runc by default; CONTAINERD=0 skips it;
// SECCOMP=RuntimeDefault gives every container the RuntimeDefault seccomp profile.)

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "test/fixtures/image_builder.h"
#include "test/fixtures/registry.h"
#include "test/bench/containerd_env.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/http.h"
#include "test/lib/process.h"

namespace {

using berth::testing::BerthDaemon;
using berth::testing::ContainerdEnv;
using berth::testing::CriClient;
using runtime::v1::RuntimeService;
using Clock = std::chrono::steady_clock;

constexpr char kBridge[] = "berthbench0";
constexpr char kContainerdBridge[] = "berthbench1";
constexpr char kContainerdIpam[] = "/tmp/berth-bench-containerd-ipam";

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

class Bench;
// What a failure must not leave behind: the registry, and the pods of the running benches (berth's
// and containerd's, side by side).
std::unique_ptr<berth::testing::TestRegistry> g_registry;
std::mutex g_benches_mu;
std::set<Bench*> g_benches;

[[noreturn]] void Die(const std::string& what);

struct Timings {
  std::map<std::string, std::vector<double>> steps;
  std::mutex mu;
  void Add(const std::string& step, double ms) {
    std::lock_guard<std::mutex> lock(mu);
    steps[step].push_back(ms);
  }
  static constexpr const char* kSteps[] = {"RunPodSandbox", "CreateContainer", "StartContainer",
                                           "total", "ExecSync", "StopPodSandbox",
                                           "RemovePodSandbox"};
  double Median(const std::string& step) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<double> v = steps[step];
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
  void Print(const char* title) {
    std::printf("%s\n", title);
    for (const char* step : kSteps) {
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
    Register();
  }
  Bench(std::unique_ptr<ContainerdEnv> containerd, std::string image)
      : containerd_(std::move(containerd)), image_(std::move(image)) {
    Register();
  }
  // Removes every pod it still has; then BerthDaemon stops berthd and removes its tree.
  ~Bench() {
    {
      std::lock_guard<std::mutex> lock(g_benches_mu);
      g_benches.erase(this);
    }
    RemoveAll();
  }
  void RemoveAll() {
    if (!daemon_ && !containerd_) return;
    auto pods = cri().Call(&RuntimeService::Stub::ListPodSandbox,
                           runtime::v1::ListPodSandboxRequest());
    if (!pods.ok()) return;
    for (const auto& p : pods->items()) {
      runtime::v1::RemovePodSandboxRequest remove;
      remove.set_pod_sandbox_id(p.id());
      (void)cri().Call(&RuntimeService::Stub::RemovePodSandbox, remove);
    }
  }
  // On a failure: the pods, then berthd and its tree. A berthd that died (or is dying: the
  // failure may be its closed socket) is started again first: it knows every pod it left. The
  // pause lets the calls other threads had in flight, which failed with it, return: the restart
  // replaces the client they used.
  void Abandon() {
    if (daemon_ && daemon_->AwaitExit(std::chrono::seconds(1)).ok()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      if (absl::Status s = daemon_->Start(); !s.ok()) {
        std::fprintf(stderr, "pod bench: restart berthd to remove its pods: %s\n",
                     s.ToString().c_str());
      }
    }
    RemoveAll();
    daemon_.reset();
    containerd_.reset();
  }
  CriClient& cri() { return daemon_ ? daemon_->client() : containerd_->client(); }
  BerthDaemon* berth() { return daemon_.get(); }
  const std::string& dir() const { return daemon_ ? daemon_->dir() : containerd_->dir(); }
  pid_t pid() const { return daemon_ ? daemon_->pid() : containerd_->pid(); }

  runtime::v1::PodSandboxConfig Pod(int i) {
    runtime::v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name(absl::StrCat("bench-", i));
    c.mutable_metadata()->set_namespace_("bench");
    c.mutable_metadata()->set_uid(absl::StrCat("uid-", i));
    c.set_hostname(absl::StrCat("bench-", i));
    c.set_log_directory(absl::StrCat(dir(), "/logs/", i));
    return c;
  }

  // What kubelet sends for a pod with `seccompProfile: RuntimeDefault` (or a kubelet with
  // seccompDefault), when SECCOMP=RuntimeDefault: both runtimes then apply the profile.
  static void Seccomp(runtime::v1::ContainerConfig* c) {
    const char* want = std::getenv("SECCOMP");
    if (want == nullptr || std::string(want) != "RuntimeDefault") return;
    c->mutable_linux()->mutable_security_context()->mutable_seccomp()->set_profile_type(
        runtime::v1::SecurityProfile::RuntimeDefault);
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
    Seccomp(create.mutable_config());
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
      // An exec probe, kubelet's most frequent call into a running container.
      runtime::v1::ExecSyncRequest exec;
      exec.set_container_id(ctr->container_id());
      exec.add_cmd("true");
      exec.set_timeout(10);
      const Clock::time_point t4 = Clock::now();
      auto probed = cri().Call(&RuntimeService::Stub::ExecSync, exec);
      if (!probed.ok() || probed->exit_code() != 0) {
        Die(absl::StrCat("ExecSync: ", probed.ok() ? "exit code " : probed.status().ToString(),
                         probed.ok() ? std::to_string(probed->exit_code()) : ""));
      }
      t->Add("ExecSync", Ms(t4, Clock::now()));
    }
    return pod->pod_sandbox_id();
  }

  // Adds and starts one more sleeping container, `name`, to pod i (id `pod`); returns its id.
  std::string AddContainer(int i, const std::string& pod, const std::string& name) {
    runtime::v1::CreateContainerRequest create;
    create.set_pod_sandbox_id(pod);
    *create.mutable_sandbox_config() = Pod(i);
    create.mutable_config()->mutable_metadata()->set_name(name);
    create.mutable_config()->mutable_image()->set_image(image_);
    create.mutable_config()->add_command("sleep");
    create.mutable_config()->add_command("100000");
    create.mutable_config()->set_log_path(name + ".log");
    Seccomp(create.mutable_config());
    auto ctr = cri().Call(&RuntimeService::Stub::CreateContainer, create);
    if (!ctr.ok()) Die(absl::StrCat("CreateContainer: ", ctr.status().ToString()));
    runtime::v1::StartContainerRequest start;
    start.set_container_id(ctr->container_id());
    auto started = cri().Call(&RuntimeService::Stub::StartContainer, start);
    if (!started.ok()) Die(absl::StrCat("StartContainer: ", started.status().ToString()));
    return ctr->container_id();
  }

  void Remove(const std::string& pod, Timings* t = nullptr) {
    const Clock::time_point t0 = Clock::now();
    runtime::v1::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(pod);
    auto stopped = cri().Call(&RuntimeService::Stub::StopPodSandbox, stop);
    if (!stopped.ok()) Die(absl::StrCat("StopPodSandbox: ", stopped.status().ToString()));
    const Clock::time_point t1 = Clock::now();
    runtime::v1::RemovePodSandboxRequest remove;
    remove.set_pod_sandbox_id(pod);
    auto removed = cri().Call(&RuntimeService::Stub::RemovePodSandbox, remove);
    if (!removed.ok()) Die(absl::StrCat("RemovePodSandbox: ", removed.status().ToString()));
    if (t != nullptr) {
      t->Add("StopPodSandbox", Ms(t0, t1));
      t->Add("RemovePodSandbox", Ms(t1, Clock::now()));
    }
  }

 private:
  void Register() {
    std::lock_guard<std::mutex> lock(g_benches_mu);
    g_benches.insert(this);
  }

  std::unique_ptr<BerthDaemon> daemon_;
  std::unique_ptr<ContainerdEnv> containerd_;
  std::string image_;
};

// What the bench leaves on the host besides its pods, removed at the end and on a failure: the
// registry, both bridges and containerd's IPAM directory.
void RemoveHostLeftovers() {
  g_registry.reset();
  for (const char* bridge : {kBridge, kContainerdBridge}) {
    berth::testing::RunCommand({"/usr/sbin/ip", "link", "del", bridge}).IgnoreError();
  }
  berth::testing::RunCommand({"/usr/bin/rm", "-rf", kContainerdIpam}).IgnoreError();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "pod bench: %s\n", what.c_str());
  static std::once_flag once;
  std::call_once(once, [] {
    std::set<Bench*> benches;
    {
      std::lock_guard<std::mutex> lock(g_benches_mu);
      benches.swap(g_benches);
    }
    for (Bench* bench : benches) bench->Abandon();
    RemoveHostLeftovers();
  });
  // Not exit(): the threads of a concurrent start can fail together, and exit() from two threads
  // (or static destructors under threads still running) crashed the bench instead.
  std::fflush(nullptr);
  std::_Exit(1);
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

// The proportional set size of a process (kB): its share of pages shared with others.
long PssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "Pss:")) return std::atol(line.c_str() + 4);
  }
  return 0;
}

// The per-container processes of a runtime: berth's monitors (their command lines name the
// daemon's tree) or containerd's shims (theirs name its socket, in its directory).
std::vector<pid_t> HelperPids(const std::string& dir, const std::string& kind) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(kind) != std::string::npos && cmdline.find(dir) != std::string::npos) {
      out.push_back(std::stoi(name));
    }
  }
  return out;
}

const std::string kConflistHead = R"({"cniVersion": "1.0.0", "name": "bench", "plugins": [
      {"type": "bridge", "bridge": ")";

// berth's pods and containerd's on bridges and subnets of their own (both run side by side).
std::string Conflist(const std::string& bridge, const std::string& ipam_dir,
                     const std::string& subnet) {
  return absl::StrCat(kConflistHead, bridge, R"(", "isGateway": true, "ipMasq": false,
       "ipam": {"type": "host-local", "dataDir": ")", ipam_dir, R"(",
                "ranges": [[{"subnet": ")", subnet, R"("}]]}}, {"type": "loopback"}]})");
}

// `monitor`: the configuration's monitor map, e.g. "{mode: container}"; "" = the default.
std::unique_ptr<Bench> Setup(const std::string& registry_host, const std::string& monitor) {
  std::string yaml = absl::StrCat("images:\n  registries:\n    - {prefix: \"", registry_host,
                                  "\", insecure: true}\n");
  if (!monitor.empty()) absl::StrAppend(&yaml, "monitor: ", monitor, "\n");
  if (const char* runtime = std::getenv("RUNTIME"); runtime != nullptr && *runtime != '\0') {
    absl::StrAppend(&yaml, "default_runtime: ", runtime, "\n");
  }
  auto daemon = BerthDaemon::Create({.extra_yaml = yaml, .log_level = "warn"});
  if (!daemon.ok()) Die(daemon.status().ToString());
  if (!berth::WriteFileAtomic((*daemon)->cni_dir() + "/10-bench.conflist",
                              Conflist(kBridge, (*daemon)->dir() + "/ipam", "10.250.0.0/16"))
           .ok()) {
    Die("write the CNI config");
  }
  if (absl::Status s = (*daemon)->Start(); !s.ok()) Die(s.ToString());
  const std::string image = registry_host + "/busybox:bench";
  if (!(*daemon)->client().PullImage(image).ok()) Die("pull");
  return std::make_unique<Bench>(*std::move(daemon), image);
}

// containerd, with its pause image already pulled (as a node has it), or nullptr when it is not
// installed or CONTAINERD=0.
std::unique_ptr<Bench> SetupContainerd(const std::string& registry_host) {
  if (const char* want = std::getenv("CONTAINERD"); want != nullptr && std::string(want) == "0") {
    return nullptr;
  }
  const std::string pause = registry_host + "/pause:bench";
  auto env = ContainerdEnv::Start(registry_host, pause,
                                  Conflist(kContainerdBridge, kContainerdIpam, "10.251.0.0/16"));
  if (absl::IsNotFound(env.status())) {
    std::printf("containerd: %s\n", std::string(env.status().message()).c_str());
    return nullptr;
  }
  if (!env.ok()) Die(env.status().ToString());
  const std::string image = registry_host + "/busybox:bench";
  auto bench = std::make_unique<Bench>(*std::move(env), image);
  for (const std::string& ref : {pause, image}) {
    if (absl::StatusOr<std::string> pulled = bench->cri().PullImage(ref); !pulled.ok()) {
      Die(absl::StrCat("containerd pull ", ref, ": ", pulled.status().ToString()));
    }
  }
  return bench;
}

struct Footprint {
  double daemon_mib = 0;
  double daemon_pss_mib = 0;   // its shared-library pages divided among their users
  double daemon_anon_mib = 0;  // its own memory
  size_t helpers = 0;
  double helpers_rss_mib = 0;
  double helpers_pss_mib = 0;
  double start_all_s = 0;   // the k pods and their containers started one after another
  double remove_all_s = 0;  // then all stopped and removed one after another
};

Footprint Memory(std::unique_ptr<Bench> bench, const std::string& helper, int k, int per_pod,
                 const char* label) {
  std::vector<std::string> pods;
  Footprint f;
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < k; ++i) {
    pods.push_back(bench->Start(i, nullptr));
    for (int c = 1; c < per_pod; ++c) bench->AddContainer(i, pods.back(), absl::StrCat("m", c));
  }
  f.start_all_s = Ms(start, Clock::now()) / 1000;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  f.daemon_mib = RssKb(bench->pid()) / 1024.0;
  f.daemon_pss_mib = PssKb(bench->pid()) / 1024.0;
  f.daemon_anon_mib = berth::testing::ProcStatusField(bench->pid(), "RssAnon") / 1024.0;
  for (pid_t pid : HelperPids(bench->dir(), helper)) {
    ++f.helpers;
    f.helpers_rss_mib += RssKb(pid) / 1024.0;
    f.helpers_pss_mib += PssKb(pid) / 1024.0;
  }
  std::printf("%d running pods of %d container(s) each, %s:\n", k, per_pod, label);
  std::printf("  daemon RSS %8.1f MiB (PSS %.1f, anonymous %.1f); %zu %s processes, RSS %.1f MiB, "
              "PSS %.1f MiB in all\n",
              f.daemon_mib, f.daemon_pss_mib, f.daemon_anon_mib, f.helpers, helper.c_str(),
              f.helpers_rss_mib, f.helpers_pss_mib);
  const Clock::time_point remove = Clock::now();
  for (const std::string& pod : pods) bench->Remove(pod);
  f.remove_all_s = Ms(remove, Clock::now()) / 1000;
  std::printf("  started one after another in %.2f s, stopped and removed one after another in "
              "%.2f s\n",
              f.start_all_s, f.remove_all_s);
  return f;
}

struct Run {
  Timings sequential;
  Timings concurrent;
};

// `m` pods started at once (pods `first`.. `first` + m - 1), each timed into `t`, then removed.
void StartConcurrently(Bench& bench, int first, int m, Timings* t) {
  std::vector<std::string> pods(m);
  std::vector<std::thread> threads;
  for (int i = 0; i < m; ++i) {
    threads.emplace_back([&, i] { pods[i] = bench.Start(first + i, t); });
  }
  for (std::thread& th : threads) th.join();
  for (const std::string& pod : pods) bench.Remove(pod);
}

// berth alone (no containerd to compare with).
void MeasureBerth(Bench& berth, int n, int m, Run* run) {
  berth.Remove(berth.Start(1000, nullptr));  // warm caches
  for (int i = 0; i < n; ++i) berth.Remove(berth.Start(i, &run->sequential), &run->sequential);
  run->sequential.Print(
      absl::StrCat("berth: ", n, " pods one after another (pod + 1 container):").c_str());
  PrintSteps(berth.berth()->metrics_address());
  StartConcurrently(berth, 100, m, &run->concurrent);
  run->concurrent.Print(absl::StrCat("berth: ", m, " pods started concurrently:").c_str());
}

// Both runtimes, taking turns: pods one after another in blocks of five (berth's block, then
// containerd's; the next pair containerd's first), then two rounds of `m` at once each, alternated
// the same way, so that both are measured on the machine in the same state. Measured minutes
// apart (containerd's after berth's memory and scale runs), each met it in its own state and the
// ratio moved with that from run to run. Only one runtime works at a time, and each turn starts
// 1.5 s after the other's last call: berthd keeps the cgroup attach lock warm for a second after
// its last start, which containerd must not be measured on (nor berth on containerd's teardown).
void MeasureSideBySide(Bench& berth, Bench& containerd, int n, int m, Run* berth_run,
                       Run* containerd_run) {
  constexpr int kBlock = 5;
  constexpr auto kSettle = std::chrono::milliseconds(1500);
  berth.Remove(berth.Start(1000, nullptr));  // warm caches
  containerd.Remove(containerd.Start(1000, nullptr));
  auto turns = [&](int turn, const std::function<void(Bench&, Run*)>& work) {
    for (int side = 0; side < 2; ++side) {
      const bool is_berth = (side == 0) == (turn % 2 == 0);
      std::this_thread::sleep_for(kSettle);
      work(is_berth ? berth : containerd, is_berth ? berth_run : containerd_run);
    }
  };
  for (int first = 0; first < n; first += kBlock) {
    turns(first / kBlock, [&](Bench& bench, Run* run) {
      for (int i = first; i < std::min(n, first + kBlock); ++i) {
        bench.Remove(bench.Start(i, &run->sequential), &run->sequential);
      }
    });
  }
  for (auto [name, run] :
       {std::pair("berth", berth_run), std::pair("containerd", containerd_run)}) {
    run->sequential.Print(
        absl::StrCat(name, ": ", n, " pods one after another (pod + 1 container), in turns:")
            .c_str());
  }
  PrintSteps(berth.berth()->metrics_address());
  constexpr int kRounds = 2;
  for (int round = 0; round < kRounds; ++round) {
    turns(round, [&](Bench& bench, Run* run) {
      StartConcurrently(bench, 100 + round * m, m, &run->concurrent);
    });
  }
  for (auto [name, run] :
       {std::pair("berth", berth_run), std::pair("containerd", containerd_run)}) {
    run->concurrent.Print(
        absl::StrCat(name, ": ", m, " pods started concurrently, ", kRounds, " rounds in turns:")
            .c_str());
  }
}

// berthd's own time for `operation` (berth_operations_latency_seconds): sum and count so far.
std::pair<double, double> ServerTime(const std::string& metrics_address,
                                     const std::string& operation) {
  absl::StatusOr<berth::testing::HttpResponse> got =
      berth::testing::HttpGet(metrics_address, "/metrics");
  if (!got.ok() || got->status != 200) Die("scrape berthd's metrics");
  std::pair<double, double> out;
  const std::string labels = absl::StrCat("{operation=\"", operation, "\"} ");
  std::istringstream lines(got->body);
  for (std::string line; std::getline(lines, line);) {
    if (absl::StartsWith(line, "berth_operations_latency_seconds_sum" + labels)) {
      out.first = std::atof(line.c_str() + line.rfind(' ') + 1);
    } else if (absl::StartsWith(line, "berth_operations_latency_seconds_count" + labels)) {
      out.second = std::atof(line.c_str() + line.rfind(' ') + 1);
    }
  }
  return out;
}

// kubelet's reads at scale: `pods` pods started at once (one container each), then `per_pod` - 1
// more containers in each, all running; then ListContainers, ListPodSandbox, ContainerStatus and
// ListContainerStats, 100 calls each, timed by the client and (berth) by berthd itself.
void Scale(Bench& bench, int pods, int per_pod, const char* name, Timings* out) {
  Timings& t = *out;
  std::vector<std::string> ids(pods);
  {
    Timings starts;
    std::vector<std::thread> threads;
    for (int i = 0; i < pods; ++i) {
      threads.emplace_back([&, i] { ids[i] = bench.Start(2000 + i, &starts); });
    }
    for (std::thread& th : threads) th.join();
    starts.Print(absl::StrCat(name, ": ", pods, " pods started at once:").c_str());
    t.Add("start, all at once", starts.Median("total"));
  }
  {
    std::vector<std::thread> threads;
    constexpr int kWorkers = 4;
    for (int w = 0; w < kWorkers; ++w) {
      threads.emplace_back([&, w] {
        for (int i = w; i < pods; i += kWorkers) {
          for (int c = 1; c < per_pod; ++c) bench.AddContainer(2000 + i, ids[i], absl::StrCat("c", c));
        }
      });
    }
    for (std::thread& th : threads) th.join();
  }
  auto listed = bench.cri().Call(&RuntimeService::Stub::ListContainers,
                                 runtime::v1::ListContainersRequest());
  if (!listed.ok()) Die("ListContainers");
  const int containers = listed->containers_size();
  struct Read {
    const char* operation;
    std::function<bool(int)> call;
  };
  const std::vector<Read> reads = {
      {"ListContainers",
       [&](int) {
         return bench.cri()
             .Call(&RuntimeService::Stub::ListContainers, runtime::v1::ListContainersRequest())
             .ok();
       }},
      {"ListPodSandbox",
       [&](int) {
         return bench.cri()
             .Call(&RuntimeService::Stub::ListPodSandbox, runtime::v1::ListPodSandboxRequest())
             .ok();
       }},
      {"ContainerStatus",
       [&](int i) {
         runtime::v1::ContainerStatusRequest r;
         r.set_container_id(listed->containers(i % containers).id());
         return bench.cri().Call(&RuntimeService::Stub::ContainerStatus, r).ok();
       }},
      {"ListContainerStats",
       [&](int) {
         return bench.cri()
             .Call(&RuntimeService::Stub::ListContainerStats,
                   runtime::v1::ListContainerStatsRequest())
             .ok();
       }},
  };
  std::printf("%s: %d running containers in %d pods, 100 calls of each read:\n", name, containers,
              pods);
  for (const Read& read : reads) {
    const std::string metrics =
        bench.berth() != nullptr ? bench.berth()->metrics_address() : std::string();
    const std::pair<double, double> before =
        metrics.empty() ? std::pair<double, double>() : ServerTime(metrics, read.operation);
    Timings calls;
    for (int i = 0; i < 100; ++i) {
      const Clock::time_point t0 = Clock::now();
      if (!read.call(i)) Die(read.operation);
      calls.Add("call", Ms(t0, Clock::now()));
    }
    t.Add(read.operation, calls.Median("call"));
    std::string server;
    if (!metrics.empty()) {
      const std::pair<double, double> after = ServerTime(metrics, read.operation);
      if (after.second > before.second) {
        server = absl::StrCat("; berthd's own mean ",
                              absl::StrFormat("%.2f", 1000 * (after.first - before.first) /
                                                          (after.second - before.second)),
                              " ms");
      }
    }
    std::vector<double>& v = calls.steps["call"];
    std::sort(v.begin(), v.end());
    std::printf("  %-18s median %6.2f ms   p99 %6.2f ms (client)%s\n", read.operation, v[v.size() / 2],
                v[std::min(v.size() - 1, v.size() * 99 / 100)], server.c_str());
  }
  for (const std::string& pod : ids) bench.Remove(pod);
}

void Ratio(const char* what, double berth, double containerd) {
  std::printf("  %-34s %9.1f %11.1f %7.2f\n", what, berth, containerd,
              containerd > 0 ? berth / containerd : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  if (::geteuid() != 0) Die("needs root");
  const int n = argc > 1 ? std::atoi(argv[1]) : 20;
  const int m = argc > 2 ? std::atoi(argv[2]) : 10;
  const int k = argc > 3 ? std::atoi(argv[3]) : 50;
  const int scale_pods = argc > 4 ? std::atoi(argv[4]) : 100;
  const int per_pod = argc > 5 ? std::atoi(argv[5]) : 5;
  const int memory_per_pod = argc > 6 ? std::max(1, std::atoi(argv[6])) : 2;
  auto registry = berth::testing::TestRegistry::Start();
  if (!registry.ok()) Die(registry.status().ToString());
  g_registry = *std::move(registry);
  const std::string host = g_registry->host();
  berth::testing::ImageSpec spec;
  spec.cmd = {"sh"};
  // Symbolic links to busybox, not the hard links of the test fixtures' layer: containerd gives a
  // hard link's header mode to the file it links to.
  berth::testing::LayerBuilder busybox;
  busybox.Dir("bin").File("bin/busybox", *berth::ReadFile("/bin/busybox"), 0755);
  for (const char* applet : {"sh", "sleep", "true"}) {
    busybox.Symlink(absl::StrCat("bin/", applet), "busybox");
  }
  if (!g_registry->Push("busybox", "bench", berth::testing::BuildImage({busybox.Build()}, spec))
           .ok()) {
    Die("push");
  }
  const std::string pause_binary =
      (std::filesystem::path(berth::testing::BerthdPath()).parent_path().parent_path() /
       "libexec/berth/berth-pause")
          .string();
  if (absl::StatusOr<std::string> pause_bytes = berth::ReadFile(pause_binary); pause_bytes.ok()) {
    berth::testing::ImageSpec pause_spec;
    pause_spec.entrypoint = {"/pause"};
    berth::testing::LayerBuilder pause_layer;
    pause_layer.File("pause", *pause_bytes, 0755);
    if (!g_registry->Push("pause", "bench",
                          berth::testing::BuildImage({pause_layer.Build()}, pause_spec))
             .ok()) {
      Die("push the pause image");
    }
  }
  Run berth_run;
  Run containerd_run;
  bool side_by_side = false;
  {
    std::unique_ptr<Bench> bench = Setup(host, "");
    if (std::unique_ptr<Bench> containerd = SetupContainerd(host); containerd != nullptr) {
      MeasureSideBySide(*bench, *containerd, n, m, &berth_run, &containerd_run);
      side_by_side = true;
    } else {
      std::printf("containerd is not installed (or CONTAINERD=0): no side-by-side figures\n");
      MeasureBerth(*bench, n, m, &berth_run);
    }
  }
  const Footprint berth_memory = Memory(Setup(host, ""), "conmon", k, memory_per_pod,
                                        "berth with berth-conmon, one per pod");
  Memory(Setup(host, "{mode: container}"), "conmon", k, memory_per_pod,
         "berth with berth-conmon, one per container");
  Timings berth_scale;
  if (scale_pods > 0) Scale(*Setup(host, ""), scale_pods, per_pod, "berth", &berth_scale);
  if (::access("/usr/bin/conmon", X_OK) == 0) {
    Memory(Setup(host, "{path: /usr/bin/conmon}"), "conmon", k, memory_per_pod,
           "berth with Debian's conmon");
  }
  if (side_by_side) {
    const Footprint containerd_memory =
        Memory(SetupContainerd(host), "containerd-shim", k, memory_per_pod, "containerd");
    Timings containerd_scale;
    if (scale_pods > 0) {
      Scale(*SetupContainerd(host), scale_pods, per_pod, "containerd", &containerd_scale);
    }
    std::printf("berth / containerd (medians, ms; memory MiB):\n");
    std::printf("  %-34s %9s %11s %7s\n", "", "berth", "containerd", "ratio");
    for (const char* step : Timings::kSteps) {
      Ratio(absl::StrCat(step, ", one after another").c_str(), berth_run.sequential.Median(step),
            containerd_run.sequential.Median(step));
    }
    Ratio(absl::StrCat("total, ", m, " concurrent").c_str(), berth_run.concurrent.Median("total"),
          containerd_run.concurrent.Median("total"));
    Ratio(absl::StrCat(k, " pods one after another (s)").c_str(), berth_memory.start_all_s,
          containerd_memory.start_all_s);
    Ratio(absl::StrCat("remove all ", k, " pods (s)").c_str(), berth_memory.remove_all_s,
          containerd_memory.remove_all_s);
    Ratio(absl::StrCat("daemon RSS, ", k, " pods").c_str(), berth_memory.daemon_mib,
          containerd_memory.daemon_mib);
    Ratio("daemon PSS", berth_memory.daemon_pss_mib, containerd_memory.daemon_pss_mib);
    Ratio("daemon anonymous RSS", berth_memory.daemon_anon_mib, containerd_memory.daemon_anon_mib);
    Ratio("monitors/shims RSS", berth_memory.helpers_rss_mib, containerd_memory.helpers_rss_mib);
    Ratio("monitors/shims PSS", berth_memory.helpers_pss_mib, containerd_memory.helpers_pss_mib);
    if (scale_pods > 0) {
      for (const char* read : {"start, all at once", "ListContainers", "ListPodSandbox",
                               "ContainerStatus", "ListContainerStats"}) {
        Ratio(absl::StrCat(read, ", at scale").c_str(), berth_scale.Median(read),
              containerd_scale.Median(read));
      }
    }
  }
  RemoveHostLeftovers();
  return 0;
}
