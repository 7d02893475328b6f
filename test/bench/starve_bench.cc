// Whether kubelet's periodic reads stay fast while long CRI calls are in flight (issue #13): a node
// drain. N pods, each with one container that ignores SIGTERM, are stopped all at once with a
// grace period as kubelet stops them (StopContainer with the grace period as its timeout, then
// StopPodSandbox), while five clients call ListContainers, ListPodSandbox and ContainerStatus
// every 100 ms, as kubelet's PLEG and status loops do. Prints the latency of those reads (p50,
// p99, max) before the drain, while the stops wait out the grace period and while the pods are
// torn down, their errors (RESOURCE_EXHAUSTED apart), the latency of the stops, and berthd's
// thread count. The target: p99 under 20 ms and no RESOURCE_EXHAUSTED.
// Everything is removed at the end: pods, berthd's tree, the registry and the bridge.
//
// Usage (root): BERTHD=.../bin/berthd berth_starve_bench [pods=50] [grace_seconds=30]

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "test/e2e/busybox_env.h"
#include "test/lib/cri_client.h"
#include "test/lib/process.h"

namespace {

using berth::testing::BusyboxEnv;
using berth::testing::CriClient;
using berth::testing::ProcStatusField;
using runtime::v1::RuntimeService;
using Clock = std::chrono::steady_clock;

constexpr char kBridge[] = "berthstarve0";
constexpr char kSubnet[] = "10.249.0.0/16";
constexpr int kPollers = 5;
constexpr auto kPollPeriod = std::chrono::milliseconds(100);
constexpr auto kIdlePolling = std::chrono::seconds(3);
constexpr int kStarters = 5;
constexpr std::array<const char*, 3> kReads = {"ListContainers", "ListPodSandbox",
                                               "ContainerStatus"};

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// One CRI call the bench made: which, when it returned, how long it took, how it ended.
struct Call {
  std::string rpc;
  Clock::time_point end;
  double ms = 0;
  absl::Status status;
};
using Calls = std::vector<Call>;

template <typename Stub, typename Request, typename Response>
void Timed(CriClient& cri, const char* rpc,
           grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
           const Request& request, Calls* calls) {
  const Clock::time_point t0 = Clock::now();
  absl::Status status = cri.Call(method, request).status();
  const Clock::time_point t1 = Clock::now();
  calls->push_back({rpc, t1, Ms(t0, t1), std::move(status)});
}

// The calls that returned in [from, to).
Calls Between(const Calls& calls, Clock::time_point from, Clock::time_point to) {
  Calls out;
  for (const Call& c : calls) {
    if (c.end >= from && c.end < to) out.push_back(c);
  }
  return out;
}

// n, p50, p99 and max of the calls of `rpcs` that succeeded, and of them all when there are
// several.
void PrintLatencies(const char* phase, const Calls& calls, std::vector<std::string> rpcs) {
  std::map<std::string, std::vector<double>> ms;
  for (const Call& c : calls) {
    if (!c.status.ok()) continue;
    ms[c.rpc].push_back(c.ms);
    ms["all"].push_back(c.ms);
  }
  if (rpcs.size() > 1) rpcs.push_back("all");
  for (const std::string& rpc : rpcs) {
    std::vector<double>& v = ms[rpc];
    if (v.empty()) {
      std::printf("  %-8s %-16s      no call succeeded\n", phase, rpc.c_str());
    } else {
      std::sort(v.begin(), v.end());
      std::printf("  %-8s %-16s %6zu %9.2f %9.2f %9.2f\n", phase, rpc.c_str(), v.size(),
                  v[v.size() / 2], v[std::min(v.size() - 1, (v.size() * 99) / 100)], v.back());
    }
    phase = "";
  }
}

// RESOURCE_EXHAUSTED and other failures, with the first message of each code.
void PrintErrors(const char* phase, const Calls& calls) {
  std::map<absl::StatusCode, int> count;
  std::map<absl::StatusCode, std::string> first;
  int exhausted = 0;
  int other = 0;
  for (const Call& c : calls) {
    if (c.status.ok()) continue;
    ++(c.status.code() == absl::StatusCode::kResourceExhausted ? exhausted : other);
    if (count[c.status.code()]++ == 0) first[c.status.code()] = c.rpc + ": " + c.status.ToString();
  }
  std::printf("  %-8s RESOURCE_EXHAUSTED: %d   other errors: %d\n", phase, exhausted, other);
  for (const auto& [code, message] : first) {
    std::printf("           %d x, first %s\n", count[code], message.c_str());
  }
}

// kPollers clients reading every kPollPeriod, like kubelet, until Stop(); also samples berthd's
// thread count. Not thread-safe.
class Pollers {
 public:
  Pollers(CriClient* cri, std::vector<std::string> containers, pid_t berthd)
      : cri_(cri), containers_(std::move(containers)), berthd_(berthd) {}

  void Start() {
    stop_ = false;
    calls_ = std::vector<Calls>(kPollers);
    max_threads_ = 0;
    for (int i = 0; i < kPollers; ++i) threads_.emplace_back([this, i] { Poll(i); });
    threads_.emplace_back([this] {
      while (!stop_) {
        max_threads_ =
            std::max(max_threads_.load(), static_cast<int>(ProcStatusField(berthd_, "Threads")));
        std::this_thread::sleep_for(kPollPeriod);
      }
    });
  }
  Calls Stop() {
    stop_ = true;
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    Calls all;
    for (const Calls& c : calls_) all.insert(all.end(), c.begin(), c.end());
    return all;
  }
  int max_threads() const { return max_threads_; }

 private:
  void Poll(int i) {
    Calls* calls = &calls_[i];
    for (size_t n = i; !stop_; ++n) {
      const Clock::time_point next = Clock::now() + kPollPeriod;
      Timed(*cri_, kReads[0], &RuntimeService::Stub::ListContainers,
            runtime::v1::ListContainersRequest(), calls);
      Timed(*cri_, kReads[1], &RuntimeService::Stub::ListPodSandbox,
            runtime::v1::ListPodSandboxRequest(), calls);
      runtime::v1::ContainerStatusRequest status;
      status.set_container_id(containers_[n % containers_.size()]);
      Timed(*cri_, kReads[2], &RuntimeService::Stub::ContainerStatus, status, calls);
      std::this_thread::sleep_until(next);
    }
  }

  CriClient* cri_;
  const std::vector<std::string> containers_;
  const pid_t berthd_;
  std::atomic<bool> stop_ = false;
  std::atomic<int> max_threads_ = 0;
  std::vector<Calls> calls_;  // one per poller
  std::vector<std::thread> threads_;
};

struct Pod {
  std::string id;
  std::string container;
};

absl::StatusOr<Pod> StartPod(BusyboxEnv& env, int i) {
  CriClient& cri = env.daemon->client();
  runtime::v1::RunPodSandboxRequest run;
  runtime::v1::PodSandboxConfig& config = *run.mutable_config();
  config.mutable_metadata()->set_name(absl::StrCat("starve-", i));
  config.mutable_metadata()->set_namespace_("bench");
  config.mutable_metadata()->set_uid(absl::StrCat("starve-uid-", i));
  config.set_hostname(absl::StrCat("starve-", i));
  config.set_log_directory(absl::StrCat(env.daemon->dir(), "/logs/", i));
  absl::StatusOr<runtime::v1::RunPodSandboxResponse> pod =
      cri.Call(&RuntimeService::Stub::RunPodSandbox, run);
  if (!pod.ok()) return pod.status();
  runtime::v1::CreateContainerRequest create;
  create.set_pod_sandbox_id(pod->pod_sandbox_id());
  *create.mutable_sandbox_config() = config;
  runtime::v1::ContainerConfig& c = *create.mutable_config();
  c.mutable_metadata()->set_name("stubborn");
  c.mutable_image()->set_image(env.image);
  // Ignores SIGTERM: every stop waits for its whole grace period, then SIGKILL.
  for (const char* arg : {"sh", "-c", "trap '' TERM; while true; do sleep 1; done"}) {
    c.add_command(arg);
  }
  c.set_log_path("stubborn.log");
  absl::StatusOr<runtime::v1::CreateContainerResponse> created =
      cri.Call(&RuntimeService::Stub::CreateContainer, create);
  if (!created.ok()) return created.status();
  runtime::v1::StartContainerRequest start;
  start.set_container_id(created->container_id());
  if (absl::Status s = cri.Call(&RuntimeService::Stub::StartContainer, start).status(); !s.ok()) {
    return s;
  }
  return Pod{pod->pod_sandbox_id(), created->container_id()};
}

// kStarters clients start `n` pods; the first failure, if any.
absl::StatusOr<std::vector<Pod>> StartPods(BusyboxEnv& env, int n) {
  std::vector<absl::StatusOr<Pod>> started(n, absl::UnknownError("not started"));
  std::atomic<int> next = 0;
  std::vector<std::thread> starters;
  for (int t = 0; t < kStarters; ++t) {
    starters.emplace_back([&] {
      for (int i = next++; i < n; i = next++) started[i] = StartPod(env, i);
    });
  }
  for (std::thread& t : starters) t.join();
  std::vector<Pod> pods;
  for (int i = 0; i < n; ++i) {
    if (!started[i].ok()) {
      return absl::Status(started[i].status().code(),
                          absl::StrCat("start pod ", i, ": ", started[i].status().message()));
    }
    pods.push_back(*started[i]);
  }
  return pods;
}

// Stops every pod at once as kubelet does on a drain; the StopContainer and StopPodSandbox calls.
Calls Drain(const std::string& socket, const std::vector<Pod>& pods, int grace_seconds) {
  // One channel for every stop, as kubelet has, with a deadline past the grace period.
  CriClient cri(socket, std::chrono::seconds(grace_seconds + 120));
  std::vector<Calls> calls(pods.size());
  std::vector<std::thread> stoppers;
  for (size_t i = 0; i < pods.size(); ++i) {
    stoppers.emplace_back([&, i] {
      runtime::v1::StopContainerRequest stop;
      stop.set_container_id(pods[i].container);
      stop.set_timeout(grace_seconds);
      Timed(cri, "StopContainer", &RuntimeService::Stub::StopContainer, stop, &calls[i]);
      runtime::v1::StopPodSandboxRequest stop_pod;
      stop_pod.set_pod_sandbox_id(pods[i].id);
      Timed(cri, "StopPodSandbox", &RuntimeService::Stub::StopPodSandbox, stop_pod, &calls[i]);
    });
  }
  for (std::thread& t : stoppers) t.join();
  Calls all;
  for (const Calls& c : calls) all.insert(all.end(), c.begin(), c.end());
  return all;
}

absl::Status Run(BusyboxEnv& env, int n, int grace_seconds) {
  absl::StatusOr<std::vector<Pod>> pods = StartPods(env, n);
  if (!pods.ok()) return pods.status();
  std::vector<std::string> containers;
  for (const Pod& p : *pods) containers.push_back(p.container);
  // The reads have a channel of their own, with a deadline far past the 20 ms target: a read
  // that waits is measured, not cut off. Connected before anything is measured.
  CriClient reader(env.daemon->socket_path(), std::chrono::seconds(10));
  if (absl::Status s = reader.Version().status(); !s.ok()) return s;
  Pollers pollers(&reader, containers, env.daemon->pid());

  pollers.Start();
  std::this_thread::sleep_for(kIdlePolling);
  const Calls idle = pollers.Stop();
  const int idle_threads = pollers.max_threads();

  pollers.Start();
  const Clock::time_point start = Clock::now();
  const Calls stops = Drain(env.daemon->socket_path(), *pods, grace_seconds);
  const Clock::time_point end = Clock::now();
  const Calls reads = pollers.Stop();
  // Until the first stop succeeds, every stop waits out its grace period; from then on the
  // containers are killed and their pods torn down (CNI DEL, unmounts), which takes the CPU.
  Clock::time_point first_stopped = end;
  for (const Call& c : stops) {
    if (c.rpc == "StopContainer" && c.status.ok()) first_stopped = std::min(first_stopped, c.end);
  }

  std::printf("%d pods (one container each, SIGTERM ignored) stopped at once, grace %d s:\n", n,
              grace_seconds);
  std::printf("  the drain took %.1f s; berthd had %d threads at most before it, %d during it\n",
              Ms(start, end) / 1e3, idle_threads, pollers.max_threads());
  std::printf("  ms of the calls that succeeded:\n");
  std::printf("  %-8s %-16s %6s %9s %9s %9s\n", "", "", "n", "p50", "p99", "max");
  PrintLatencies("drain", stops, {"StopContainer", "StopPodSandbox"});
  std::printf(
      "  reads by %d clients every %lld ms, before the drain, while the stops wait out the\n"
      "  grace period, and while the containers are killed and the pods torn down:\n",
      kPollers, static_cast<long long>(kPollPeriod.count()));
  const Calls grace = Between(reads, start, first_stopped);
  const Calls teardown = Between(reads, first_stopped, Clock::time_point::max());
  PrintLatencies("before", idle, {kReads.begin(), kReads.end()});
  PrintLatencies("grace", grace, {kReads.begin(), kReads.end()});
  PrintLatencies("teardown", teardown, {kReads.begin(), kReads.end()});
  PrintLatencies("drain", reads, {kReads.begin(), kReads.end()});
  std::printf("  errors:\n");
  PrintErrors("stops", stops);
  PrintErrors("before", idle);
  PrintErrors("grace", grace);
  PrintErrors("teardown", teardown);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (std::string why = BusyboxEnv::Unavailable(); !why.empty()) {
    std::fprintf(stderr, "starve bench: %s\n", why.c_str());
    return 1;
  }
  const int pods = argc > 1 ? std::atoi(argv[1]) : 50;
  const int grace_seconds = argc > 2 ? std::atoi(argv[2]) : 30;
  if (pods <= 0 || grace_seconds < 0) {
    std::fprintf(stderr, "usage: berth_starve_bench [pods=50] [grace_seconds=30]\n");
    return 2;
  }
  absl::StatusOr<BusyboxEnv> env = BusyboxEnv::Start(
      {.bridge = kBridge, .subnet = kSubnet, .network = "starve", .log_level = "warn"});
  if (!env.ok()) {
    std::fprintf(stderr, "starve bench: %s\n", env.status().ToString().c_str());
    return 1;
  }
  absl::Status result = Run(*env, pods, grace_seconds);
  absl::Status cleanup = env->daemon->client().RemoveAllPodSandboxes();
  env->daemon.reset();
  env->registry.reset();
  BusyboxEnv::RemoveBridge(kBridge);
  if (!result.ok()) std::fprintf(stderr, "starve bench: %s\n", result.ToString().c_str());
  if (!cleanup.ok()) {
    std::fprintf(stderr, "starve bench: remove the pods: %s\n", cleanup.ToString().c_str());
  }
  return result.ok() && cleanup.ok() ? 0 : 1;
}
