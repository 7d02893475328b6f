// Chaos soak (issue #13): pod churn through a real berthd (the staged install named by $BERTHD,
// with runc, the CNI bridge and a busybox image from a registry on loopback) while berthd is
// SIGKILLed at random moments and started again.
//
// Client threads play kubelet's pod workers for a set of pod slots: RunPodSandbox,
// CreateContainer, StartContainer, a while running, StopPodSandbox, RemovePodSandbox, then the
// slot's next pod. A failed call is retried on the slot's next turn with the same name and
// config, as kubelet does; a retry told AlreadyExists (the first call had finished) adopts what
// berthd lists under that name, as kubelet's next sync would; a container whose start failed is
// followed by the next attempt. A chaos thread kills berthd every few seconds and restarts it on
// the same roots. The bench keeps a ledger of what it was told; at the end it checks that berthd
// lists exactly what the ledger has, removes it all, and looks for anything left (mounts,
// namespaces, IPs, processes, runtime state, cgroups, files, rows of berth.db).
//
// Usage (root): BERTHD=.../bin/berthd berth_chaos_bench [--minutes 30] [--pods 50] [--threads 6]
//                                                       [--kill-every 5-20]

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "test/e2e/busybox_env.h"
#include "test/e2e/leaks.h"
#include "test/e2e/pod_cgroup.h"
#include "test/lib/berth_daemon.h"

namespace {

using berth::testing::BerthDaemon;
using berth::testing::CriClient;
using runtime::v1::RuntimeService;
using Clock = std::chrono::steady_clock;

constexpr char kBridge[] = "berthchaos0";

struct Flags {
  double minutes = 30;
  int pods = 50;
  int threads = 6;
  int kill_min_s = 5;
  int kill_max_s = 20;
};

// What the bench was told and did. Thread-safe.
class Ledger {
 public:
  void Made(const std::string& pod, const std::string& container = "") {
    std::lock_guard<std::mutex> lock(mu_);
    ever_.insert(container.empty() ? pod : container);
    if (container.empty()) {
      live_[pod];
      ++pods_created_;
    } else {
      live_[pod].insert(container);
      ++containers_created_;
    }
  }
  void Removed(const std::string& pod) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(pod);
  }
  // A call that failed: by its gRPC code; the first few messages of other than Unavailable.
  void Failed(const char* call, const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    ++failed_[absl::StrCat(call, " ", absl::StatusCodeToString(status.code()))];
    if (status.code() != absl::StatusCode::kUnavailable && messages_.size() < 12) {
      messages_.insert(absl::StrCat(call, ": ", status.message()));
    }
  }
  void Count(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_[what];
  }

  std::set<std::string> LiveIds() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> ids;
    for (const auto& [pod, containers] : live_) {
      ids.insert(pod);
      ids.insert(containers.begin(), containers.end());
    }
    return ids;
  }
  std::vector<std::string> LivePods() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> pods;
    for (const auto& [pod, containers] : live_) pods.push_back(pod);
    return pods;
  }
  std::set<std::string> EverIds() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ever_;
  }

  void Print() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::printf("  pods created        %6d\n  containers created  %6d\n", pods_created_,
                containers_created_);
    for (const auto& [what, n] : counts_) std::printf("  %-34s %6d\n", what.c_str(), n);
    int failed = 0;
    for (const auto& [what, n] : failed_) failed += n;
    std::printf("  calls failed        %6d\n", failed);
    for (const auto& [what, n] : failed_) std::printf("    %-32s %6d\n", what.c_str(), n);
    for (const std::string& m : messages_) std::printf("    e.g. %s\n", m.c_str());
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::set<std::string>> live_;  // pod -> its containers
  std::set<std::string> ever_;
  int pods_created_ = 0;
  int containers_created_ = 0;
  std::map<std::string, int> failed_;
  std::map<std::string, int> counts_;
  std::set<std::string> messages_;
};

// One pod slot, driven like a kubelet pod worker: one step per turn.
struct Slot {
  enum class Step { kRunPod, kCreate, kStart, kRunning, kStop, kRemove };
  int index = 0;
  int generation = 0;  // the slot's n-th pod: its uid
  Step step = Step::kRunPod;
  std::string pod;
  std::string container;
  uint32_t attempt = 0;
  Clock::time_point stop_at;
  bool failed = false;  // the last call of this step failed: the next turn retries it
};

class Chaos {
 public:
  Chaos(const Flags& flags, BerthDaemon* daemon, std::string image, std::string cgroup_parent)
      : flags_(flags),
        daemon_(daemon),
        image_(std::move(image)),
        cgroup_parent_(std::move(cgroup_parent)) {}

  Ledger& ledger() { return ledger_; }

  // Churns until `until`, killing berthd meanwhile; then each slot's pod stays as it is.
  void Run(Clock::time_point until) {
    std::vector<std::jthread> workers;
    for (int t = 0; t < flags_.threads; ++t) {
      workers.emplace_back([this, t, until] { Work(t, until); });
    }
    std::jthread killer([this, until] { Kill(until); });
  }

  std::vector<std::string> restart_errors() const { return restart_errors_; }
  const std::vector<double>& restart_ms() const { return restart_ms_; }

 private:
  runtime::v1::PodSandboxConfig PodConfig(const Slot& s) const {
    runtime::v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name(absl::StrCat("chaos-", s.index));
    c.mutable_metadata()->set_namespace_("chaos");
    c.mutable_metadata()->set_uid(absl::StrCat("uid-", s.index, "-", s.generation));
    c.set_hostname(absl::StrCat("chaos-", s.index));
    c.set_log_directory(absl::StrCat(daemon_->dir(), "/logs/", s.index, "-", s.generation));
    c.mutable_linux()->set_cgroup_parent(cgroup_parent_);
    return c;
  }

  // A call through `cri`; a failure is counted, and a client that met a dead berthd is
  // replaced (a channel that saw the socket go waits out gRPC's reconnect backoff).
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(std::unique_ptr<CriClient>& cri, const char* name,
                                grpc::Status (RuntimeService::Stub::*method)(
                                    grpc::ClientContext*, const Request&, Response*),
                                const Request& request) {
    absl::StatusOr<Response> r = cri->Call(method, request);
    if (!r.ok()) {
      ledger_.Failed(name, r.status());
      if (absl::IsUnavailable(r.status())) {
        cri = std::make_unique<CriClient>(daemon_->socket_path());
      }
    }
    return r;
  }

  // RunPodSandbox told AlreadyExists: the pod berthd has under the slot's name and uid.
  std::string FindPod(std::unique_ptr<CriClient>& cri, const Slot& s) {
    auto pods = Call(cri, "ListPodSandbox", &RuntimeService::Stub::ListPodSandbox,
                     runtime::v1::ListPodSandboxRequest());
    if (!pods.ok()) return "";
    const runtime::v1::PodSandboxConfig want = PodConfig(s);
    for (const auto& p : pods->items()) {
      if (p.metadata().name() == want.metadata().name() &&
          p.metadata().uid() == want.metadata().uid()) {
        return p.id();
      }
    }
    return "";
  }

  std::string FindContainer(std::unique_ptr<CriClient>& cri, const Slot& s) {
    runtime::v1::ListContainersRequest request;
    request.mutable_filter()->set_pod_sandbox_id(s.pod);
    auto listed = Call(cri, "ListContainers", &RuntimeService::Stub::ListContainers, request);
    if (!listed.ok()) return "";
    for (const auto& c : listed->containers()) {
      if (c.metadata().name() == "main" && c.metadata().attempt() == s.attempt) return c.id();
    }
    return "";
  }

  runtime::v1::ContainerState State(std::unique_ptr<CriClient>& cri, const std::string& id) {
    runtime::v1::ContainerStatusRequest request;
    request.set_container_id(id);
    auto status = Call(cri, "ContainerStatus", &RuntimeService::Stub::ContainerStatus, request);
    return status.ok() ? status->status().state() : runtime::v1::CONTAINER_UNKNOWN;
  }

  // The steps: false when the call failed and is to be retried.
  bool RunPod(std::unique_ptr<CriClient>& cri, Slot& s) {
    runtime::v1::RunPodSandboxRequest request;
    *request.mutable_config() = PodConfig(s);
    auto r = Call(cri, "RunPodSandbox", &RuntimeService::Stub::RunPodSandbox, request);
    if (r.ok()) {
      s.pod = r->pod_sandbox_id();
    } else if (absl::IsAlreadyExists(r.status())) {
      s.pod = FindPod(cri, s);
      if (s.pod.empty()) return false;
      ledger_.Count("pods adopted after AlreadyExists");
    } else {
      return false;
    }
    ledger_.Made(s.pod);
    s.attempt = 0;
    s.step = Slot::Step::kCreate;
    return true;
  }

  bool Create(std::unique_ptr<CriClient>& cri, Slot& s) {
    runtime::v1::CreateContainerRequest request;
    request.set_pod_sandbox_id(s.pod);
    *request.mutable_sandbox_config() = PodConfig(s);
    runtime::v1::ContainerConfig* c = request.mutable_config();
    c->mutable_metadata()->set_name("main");
    c->mutable_metadata()->set_attempt(s.attempt);
    c->mutable_image()->set_image(image_);
    c->add_command("sleep");
    c->add_command("100000");
    c->set_log_path(absl::StrCat("main/", s.attempt, ".log"));
    auto r = Call(cri, "CreateContainer", &RuntimeService::Stub::CreateContainer, request);
    if (r.ok()) {
      s.container = r->container_id();
    } else if (absl::IsAlreadyExists(r.status())) {
      s.container = FindContainer(cri, s);
      if (s.container.empty()) return false;
      ledger_.Count("containers adopted after AlreadyExists");
    } else if (absl::IsFailedPrecondition(r.status())) {
      // The pod is not ready (its pause died): kubelet stops it and makes a new one.
      ledger_.Count("pods found not ready");
      s.step = Slot::Step::kStop;
      return true;
    } else {
      return false;
    }
    ledger_.Made(s.pod, s.container);
    s.step = Slot::Step::kStart;
    return true;
  }

  bool Start(std::unique_ptr<CriClient>& cri, Slot& s, std::mt19937& random) {
    runtime::v1::StartContainerRequest request;
    request.set_container_id(s.container);
    auto r = Call(cri, "StartContainer", &RuntimeService::Stub::StartContainer, request);
    if (!r.ok()) {
      if (absl::IsUnavailable(r.status())) return false;
      const runtime::v1::ContainerState state = State(cri, s.container);
      if (state == runtime::v1::CONTAINER_CREATED || state == runtime::v1::CONTAINER_UNKNOWN) {
        return false;
      }
      if (state != runtime::v1::CONTAINER_RUNNING) {
        // It did not run: kubelet's next attempt.
        ledger_.Count("containers restarted after a failed start");
        ++s.attempt;
        s.step = Slot::Step::kCreate;
        return true;
      }
      ledger_.Count("starts found done after a failure");
    }
    s.stop_at = Clock::now() + std::chrono::milliseconds(
                                   std::uniform_int_distribution<int>(500, 8000)(random));
    s.step = Slot::Step::kRunning;
    return true;
  }

  // StopPodSandbox or RemovePodSandbox of the slot's pod.
  template <typename Request, typename Response>
  bool PodCall(std::unique_ptr<CriClient>& cri, const char* name,
               grpc::Status (RuntimeService::Stub::*method)(grpc::ClientContext*, const Request&,
                                                            Response*),
               const Slot& s) {
    Request request;
    request.set_pod_sandbox_id(s.pod);
    return Call(cri, name, method, request).ok();
  }

  bool Stop(std::unique_ptr<CriClient>& cri, Slot& s) {
    if (!PodCall(cri, "StopPodSandbox", &RuntimeService::Stub::StopPodSandbox, s)) return false;
    s.step = Slot::Step::kRemove;
    return true;
  }

  bool Remove(std::unique_ptr<CriClient>& cri, Slot& s) {
    if (!PodCall(cri, "RemovePodSandbox", &RuntimeService::Stub::RemovePodSandbox, s)) {
      return false;
    }
    ledger_.Removed(s.pod);
    s = Slot{.index = s.index, .generation = s.generation + 1};
    return true;
  }

  // One turn of slot `s`: its next step, or the retry of the step that failed.
  void Turn(std::unique_ptr<CriClient>& cri, Slot& s, std::mt19937& random) {
    if (s.failed) ledger_.Count("retries");
    switch (s.step) {
      case Slot::Step::kRunPod:
        s.failed = !RunPod(cri, s);
        break;
      case Slot::Step::kCreate:
        s.failed = !Create(cri, s);
        break;
      case Slot::Step::kStart:
        s.failed = !Start(cri, s, random);
        break;
      case Slot::Step::kRunning:
        if (Clock::now() >= s.stop_at) s.step = Slot::Step::kStop;
        break;
      case Slot::Step::kStop:
        s.failed = !Stop(cri, s);
        break;
      case Slot::Step::kRemove:
        s.failed = !Remove(cri, s);
        break;
    }
  }

  void Work(int thread, Clock::time_point until) {
    std::mt19937 random(static_cast<unsigned>(thread) * 7919u + 17u);
    std::vector<Slot> slots;
    for (int i = thread; i < flags_.pods; i += flags_.threads) slots.push_back(Slot{.index = i});
    auto cri = std::make_unique<CriClient>(daemon_->socket_path());
    // kubelet's pod workers do not spin: a short pause between turns.
    constexpr auto kPause = std::chrono::milliseconds(100);
    while (Clock::now() < until) {
      for (Slot& s : slots) Turn(cri, s, random);
      std::this_thread::sleep_for(kPause);
    }
    // Time is up: no new step, but a call that failed is retried until it is through, so that
    // the ledger knows how every call it made ended.
    const Clock::time_point give_up = Clock::now() + std::chrono::minutes(2);
    for (bool pending = true; pending && Clock::now() < give_up;) {
      pending = false;
      for (Slot& s : slots) {
        if (!s.failed) continue;
        Turn(cri, s, random);
        pending = pending || s.failed;
      }
      if (pending) std::this_thread::sleep_for(kPause);
    }
  }

  void Kill(Clock::time_point until) {
    std::mt19937 random(4242);
    for (;;) {
      const auto next = Clock::now() + std::chrono::seconds(std::uniform_int_distribution<int>(
                                           flags_.kill_min_s, flags_.kill_max_s)(random));
      if (next >= until) break;
      std::this_thread::sleep_until(next);
      daemon_->Kill();
      ledger_.Count("berthd killed");
      const Clock::time_point t0 = Clock::now();
      if (absl::Status s = daemon_->Start(); !s.ok()) {
        restart_errors_.push_back(std::string(s.message().substr(0, 2000)));
        return;
      }
      restart_ms_.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
  }

  const Flags flags_;
  BerthDaemon* const daemon_;
  const std::string image_;
  const std::string cgroup_parent_;
  Ledger ledger_;
  // The chaos thread's alone until Run returns.
  std::vector<std::string> restart_errors_;
  std::vector<double> restart_ms_;
};

bool ParseFlags(int argc, char** argv, Flags& flags) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    bool ok = false;
    if (flag == "--minutes") {
      ok = absl::SimpleAtod(value, &flags.minutes);
    } else if (flag == "--pods") {
      ok = absl::SimpleAtoi(value, &flags.pods);
    } else if (flag == "--threads") {
      ok = absl::SimpleAtoi(value, &flags.threads);
    } else if (flag == "--kill-every") {
      std::pair<std::string, std::string> range = absl::StrSplit(value, '-');
      ok = absl::SimpleAtoi(range.first, &flags.kill_min_s) &&
           absl::SimpleAtoi(range.second, &flags.kill_max_s) &&
           flags.kill_min_s <= flags.kill_max_s;
    }
    if (!ok) return false;
  }
  return argc % 2 == 1 && flags.pods > 0 && flags.threads > 0;
}

void PrintDifference(const char* what, const std::set<std::string>& a,
                     const std::set<std::string>& b) {
  std::vector<std::string> only;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only));
  std::printf("  %-44s %6zu\n", what, only.size());
  for (const std::string& id : only) std::printf("    %s\n", id.c_str());
}

// Every pod and container of the ledger is listed, and nothing else; then all of it goes, and
// nothing may be left. Returns whether all held.
bool Account(BerthDaemon& daemon, Chaos& chaos, const std::string& cgroup_parent) {
  const std::set<std::string> ledger = chaos.ledger().LiveIds();
  absl::StatusOr<std::set<std::string>> listed_or = berth::testing::ListedIds(daemon.client());
  if (!listed_or.ok()) {
    std::printf("berthd does not list: %s\n", listed_or.status().ToString().c_str());
    return false;
  }
  const std::set<std::string>& listed = *listed_or;
  std::printf("accounting (berthd restarted after the last kill):\n");
  std::printf("  %-44s %6zu\n", "pods and containers in the ledger", ledger.size());
  std::printf("  %-44s %6zu\n", "pods and containers berthd lists", listed.size());
  PrintDifference("in the ledger, not listed (lost)", ledger, listed);
  PrintDifference("listed, not in the ledger (unaccounted for)", listed, ledger);
  int failed_removals = 0;
  for (const std::string& pod : chaos.ledger().LivePods()) {
    runtime::v1::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(pod);
    runtime::v1::RemovePodSandboxRequest remove;
    remove.set_pod_sandbox_id(pod);
    if (!daemon.client().Call(&RuntimeService::Stub::StopPodSandbox, stop).ok() ||
        !daemon.client().Call(&RuntimeService::Stub::RemovePodSandbox, remove).ok()) {
      ++failed_removals;
    }
  }
  std::printf("  %-44s %6d\n", "pods whose removal failed", failed_removals);
  // What the ledger did not know goes too, so that the leak check looks at berth alone.
  (void)daemon.client().RemoveAllPodSandboxes();
  std::set<std::string> ever = chaos.ledger().EverIds();
  ever.insert(listed.begin(), listed.end());
  const std::vector<std::string> leaks =
      berth::testing::FindLeaks(daemon, {.ids = ever, .cgroup_parent = cgroup_parent});
  daemon.Kill();
  const std::vector<std::string> stored = berth::testing::FindStoredLeaks(daemon);
  std::printf("leak check after removing everything:\n");
  std::printf("  %-44s %6zu\n", "left behind (mounts, netns, IPs, processes,", leaks.size());
  std::printf("  %-44s\n", "  runtime state, cgroups, files)");
  for (const std::string& l : leaks) std::printf("    %s\n", l.c_str());
  std::printf("  %-44s %6zu\n", "left in berth.db and the image store", stored.size());
  for (const std::string& l : stored) std::printf("    %s\n", l.c_str());
  return ledger == listed && failed_removals == 0 && leaks.empty() && stored.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) {
    std::fprintf(stderr, "usage: berth_chaos_bench [--minutes M] [--pods N] [--threads T] "
                         "[--kill-every MIN-MAX seconds]\n");
    return 2;
  }
  if (std::string why = berth::testing::BusyboxEnv::Unavailable(); !why.empty()) {
    std::fprintf(stderr, "chaos bench: %s\n", why.c_str());
    return 1;
  }
  auto registry = berth::testing::BusyboxEnv::StartRegistry();
  if (!registry.ok()) {
    std::fprintf(stderr, "chaos bench: registry: %s\n", registry.status().ToString().c_str());
    return 1;
  }
  auto daemon = berth::testing::BusyboxEnv::CreateDaemon(
      **registry, {.bridge = kBridge, .subnet = "10.248.0.0/16", .network = "chaos"});
  if (!daemon.ok() || !(*daemon)->Start().ok()) {
    std::fprintf(stderr, "chaos bench: berthd does not start\n");
    return 1;
  }
  const std::string image = (*registry)->host() + "/busybox:1";
  if (absl::Status s = (*daemon)->client().PullImage(image).status(); !s.ok()) {
    std::fprintf(stderr, "chaos bench: pull: %s\n", s.ToString().c_str());
    return 1;
  }
  // One kubelet-style cgroup parent for all the pods: what is left below it is a leak.
  berth::testing::PodCgroup cgroup("chaos");
  if (absl::Status s = cgroup.Create(); !s.ok()) {
    std::fprintf(stderr, "chaos bench: cgroup: %s\n", s.ToString().c_str());
    return 1;
  }
  const std::string cgroup_parent = cgroup.parent();
  Chaos chaos(flags, daemon->get(), image, cgroup_parent);
  std::printf("chaos: %d pod slots, %d client threads, berthd killed every %d-%d s, %.1f min\n",
              flags.pods, flags.threads, flags.kill_min_s, flags.kill_max_s, flags.minutes);
  std::fflush(stdout);
  const Clock::time_point t0 = Clock::now();
  chaos.Run(t0 + std::chrono::milliseconds(static_cast<int64_t>(flags.minutes * 60000)));
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (const std::string& e : chaos.restart_errors()) {
    std::printf("berthd did not start again:\n%s\n", e.c_str());
  }
  // The accounting starts from a berthd that recovered, as after every kill.
  (*daemon)->Kill();
  const bool restarted = (*daemon)->Start().ok();
  std::printf("churn: %.0f s\n", seconds);
  chaos.ledger().Print();
  std::vector<double> ms = chaos.restart_ms();
  std::sort(ms.begin(), ms.end());
  if (!ms.empty()) {
    std::printf("  berthd restart to serving: median %.0f ms, max %.0f ms\n", ms[ms.size() / 2],
                ms.back());
  }
  bool ok = restarted && chaos.restart_errors().empty() &&
                  Account(**daemon, chaos, cgroup_parent);
  daemon->reset();
  berth::testing::BusyboxEnv::RemoveBridge(kBridge);
  if (!cgroup.Remove()) {
    std::printf("a cgroup is left under %s\n", cgroup_parent.c_str());
    ok = false;
  }
  std::printf("%s\n", ok ? "everything accounted for, nothing left" : "FOUND PROBLEMS (above)");
  return ok ? 0 : 1;
}
