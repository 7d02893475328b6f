// Crash consistency (issue #13): every failpoint of berth::AllFailpoints(), in both modes, on a
// real berthd with runc, the CNI bridge (a bridge and subnet of this test's own) and a busybox
// image from a registry on loopback. For each, berthd starts with that failpoint armed for one
// hit, and the test drives kubelet's calls up to the one that meets it:
//   error: the call fails with the failpoint's error and nothing of what it was making is left;
//   kill:  berthd dies on the spot (SIGKILL, the failpoint in its log), starts again on the same
//          root and run root without failpoints, and settles by its records and intents alone
//          (the orphan sweep finds nothing);
// then kubelet's retry succeeds, the rest of the pod's life works, and once the pod is removed
// nothing at all is left: mounts, namespaces, IPs, processes, runtime state, cgroups, files,
// rows of berth.db, image store leftovers.

#include <signal.h>
#include <unistd.h>

#include <optional>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/failpoint.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/e2e/busybox_env.h"
#include "test/e2e/leaks.h"
#include "test/e2e/pod_cgroup.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/eventually.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using runtime::v1::RuntimeService;

constexpr char kBridge[] = "berthfp0";

// The kubelet calls of a pod's life, in order.
enum class Call { kPullImage, kRunPodSandbox, kCreateContainer, kStartContainer, kStopPodSandbox,
                  kRemovePodSandbox };

const char* NameOf(Call call) {
  switch (call) {
    case Call::kPullImage: return "PullImage";
    case Call::kRunPodSandbox: return "RunPodSandbox";
    case Call::kCreateContainer: return "CreateContainer";
    case Call::kStartContainer: return "StartContainer";
    case Call::kStopPodSandbox: return "StopPodSandbox";
    case Call::kRemovePodSandbox: return "RemovePodSandbox";
  }
  return "?";
}

// The call a failpoint is met in, by its flow; nothing for a failpoint this walk cannot drive.
std::optional<Call> CallOf(const std::string& failpoint) {
  static const std::pair<const char*, Call> kFlows[] = {
      {"image.pull.", Call::kPullImage},
      {"sandbox.run.", Call::kRunPodSandbox},
      {"container.create.", Call::kCreateContainer},
      {"container.start.", Call::kStartContainer},
      {"sandbox.stop.", Call::kStopPodSandbox},
      // RemovePodSandbox removes the pod's containers.
      {"sandbox.remove.", Call::kRemovePodSandbox},
      {"container.remove.", Call::kRemovePodSandbox},
  };
  for (const auto& [prefix, call] : kFlows) {
    if (absl::StartsWith(failpoint, prefix)) return call;
  }
  return std::nullopt;
}

// The parameter: a failpoint and whether it kills berthd (else it fails the step).
class FailpointTest : public ::testing::TestWithParam<std::tuple<std::string, bool>> {
 protected:
  // One registry for the suite: every case pulls busybox from it into a berthd of its own.
  static void SetUpTestSuite() {
    if (!BusyboxEnv::Unavailable().empty()) return;
    absl::StatusOr<std::unique_ptr<TestRegistry>> registry = BusyboxEnv::StartRegistry();
    if (registry.ok()) {
      registry_ = registry->release();
    } else {
      registry_error_ = new absl::Status(registry.status());
    }
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }

  const std::string& failpoint() const { return std::get<0>(GetParam()); }
  bool kill() const { return std::get<1>(GetParam()); }

  void SetUp() override {
    if (std::string why = BusyboxEnv::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_NE(registry_, nullptr) << *registry_error_;
    cgroup_ = std::make_unique<PodCgroup>("uid-pod");
    ASSERT_TRUE(cgroup_->Create().ok());
    image_ = registry_->host() + "/busybox:1";
    absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BusyboxEnv::CreateDaemon(
        *registry_, {.bridge = kBridge, .subnet = "10.251.13.0/24", .network = "e2e-fp"});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    const std::string armed =
        absl::StrCat("BERTH_FAILPOINTS=", failpoint(), "=", kill() ? "kill" : "error", "*1");
    ASSERT_TRUE(daemon_->Start({armed}).ok()) << daemon_->Log();
  }

  void TearDown() override {
    if (daemon_) {
      // Whatever a failed case left: berthd's own removal first.
      if (!daemon_->running()) (void)daemon_->Start();
      if (daemon_->running()) (void)cri().RemoveAllPodSandboxes();
      daemon_.reset();
    }
    BusyboxEnv::RemoveBridge(kBridge);
    if (cgroup_) {
      EXPECT_TRUE(cgroup_->Remove()) << "a cgroup is left under " << cgroup_->parent();
    }
  }

  CriClient& cri() { return daemon_->client(); }

  runtime::v1::PodSandboxConfig PodConfig() {
    runtime::v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name("pod");
    c.mutable_metadata()->set_namespace_("e2e");
    c.mutable_metadata()->set_uid("uid-pod");
    c.set_hostname("pod");
    c.set_log_directory(daemon_->dir() + "/logs/pod");
    c.mutable_linux()->set_cgroup_parent(cgroup_->parent());
    return c;
  }

  runtime::v1::ContainerState State(const std::string& id) {
    runtime::v1::ContainerStatusRequest request;
    request.set_container_id(id);
    absl::StatusOr<runtime::v1::ContainerStatusResponse> status =
        cri().Call(&RuntimeService::Stub::ContainerStatus, request);
    return status.ok() ? status->status().state() : runtime::v1::CONTAINER_UNKNOWN;
  }

  // One kubelet call; what it made joins the live set, what it removed leaves it.
  absl::Status Do(Call call) {
    switch (call) {
      case Call::kPullImage:
        return cri().PullImage(image_).status();
      case Call::kRunPodSandbox: {
        runtime::v1::RunPodSandboxRequest request;
        *request.mutable_config() = PodConfig();
        absl::StatusOr<runtime::v1::RunPodSandboxResponse> r =
            cri().Call(&RuntimeService::Stub::RunPodSandbox, request);
        if (!r.ok()) return r.status();
        pod_ = r->pod_sandbox_id();
        Made(pod_);
        return absl::OkStatus();
      }
      case Call::kCreateContainer: {
        runtime::v1::CreateContainerRequest request;
        request.set_pod_sandbox_id(pod_);
        runtime::v1::ContainerConfig* c = request.mutable_config();
        c->mutable_metadata()->set_name("main");
        c->mutable_metadata()->set_attempt(attempt_);
        c->mutable_image()->set_image(image_);
        c->add_command("sleep");
        c->add_command("3600");
        c->set_log_path(absl::StrCat("main/", attempt_, ".log"));
        *request.mutable_sandbox_config() = PodConfig();
        absl::StatusOr<runtime::v1::CreateContainerResponse> r =
            cri().Call(&RuntimeService::Stub::CreateContainer, request);
        if (!r.ok()) return r.status();
        container_ = r->container_id();
        Made(container_);
        return absl::OkStatus();
      }
      case Call::kStartContainer: {
        runtime::v1::StartContainerRequest request;
        request.set_container_id(container_);
        absl::Status s = cri().Call(&RuntimeService::Stub::StartContainer, request).status();
        if (s.ok() && State(container_) != runtime::v1::CONTAINER_RUNNING) {
          return absl::InternalError(absl::StrCat("container ", container_, " started, not running"));
        }
        return s;
      }
      case Call::kStopPodSandbox: {
        runtime::v1::StopPodSandboxRequest request;
        request.set_pod_sandbox_id(pod_);
        absl::Status s = cri().Call(&RuntimeService::Stub::StopPodSandbox, request).status();
        if (s.ok() && !ReservedAddresses(*daemon_).empty()) {
          return absl::InternalError("the pod is stopped, but its IP is still reserved");
        }
        return s;
      }
      case Call::kRemovePodSandbox: {
        runtime::v1::RemovePodSandboxRequest request;
        request.set_pod_sandbox_id(pod_);
        absl::Status s = cri().Call(&RuntimeService::Stub::RemovePodSandbox, request).status();
        if (s.ok()) live_.clear();  // its containers went with it
        return s;
      }
    }
    return absl::InternalError("unknown call");
  }

  void Made(const std::string& id) {
    live_.insert(id);
    ids_.insert(id);
  }

  LeakScope Scope() const {
    return {.live = live_, .ids = ids_, .cgroup_parent = cgroup_->parent()};
  }

  // The armed call failed: with the failpoint's error, or by berthd's death (then it is started
  // again, without failpoints).
  void ExpectFailpoint(const absl::Status& failed) {
    const std::string hit = absl::StrCat("failpoint ", failpoint(), " hit");
    if (!kill()) {
      EXPECT_EQ(failed.code(), absl::StatusCode::kInternal) << failed;
      EXPECT_THAT(std::string(failed.message()), HasSubstr("failpoint " + failpoint()));
      EXPECT_THAT(daemon_->Log(), HasSubstr(hit));
      return;
    }
    absl::StatusOr<int> exit = daemon_->AwaitExit(std::chrono::seconds(10));
    ASSERT_TRUE(exit.ok()) << "berthd did not die: " << exit.status();
    EXPECT_EQ(*exit, 128 + SIGKILL);
    ASSERT_THAT(daemon_->Log(), HasSubstr(hit));
    ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
    // The records and intents settle it all: the sweep, the net for what no record explains,
    // finds nothing.
    const std::string log = daemon_->Log();
    EXPECT_THAT(log.substr(log.rfind(hit)),
                HasSubstr("orphan sweep: 0 runtime container(s), 0 CNI attachment(s), 0 mount(s), "
                          "0 path(s) removed"));
  }

  std::set<std::string> Listed() {
    absl::StatusOr<std::set<std::string>> ids = ListedIds(cri());
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::set<std::string>();
  }

  // Right after the failure (or the restart): what the failed call was making is gone; what
  // was there before is intact (a removal may have gone part of the way).
  void ExpectSettled(Call call) {
    if (call == Call::kRemovePodSandbox) {
      EXPECT_THAT(Listed(), ::testing::IsSubsetOf(live_));
    } else {
      EXPECT_EQ(Listed(), live_);
    }
    if (call == Call::kPullImage) {
      absl::StatusOr<runtime::v1::ImageStatusResponse> status = cri().ImageStatus(image_);
      ASSERT_TRUE(status.ok()) << status.status();
      EXPECT_FALSE(status->has_image()) << "a failed pull recorded the image";
      EXPECT_THAT(FindStoredLeaks(*daemon_, live_), IsEmpty()) << "after " << NameOf(call);
    }
    if (call == Call::kStartContainer) {
      // Failed: it does not run. Cut short: it is created or runs, as far as the start went.
      const runtime::v1::ContainerState state = State(container_);
      if (kill()) {
        EXPECT_THAT(state, ::testing::AnyOf(runtime::v1::CONTAINER_CREATED,
                                            runtime::v1::CONTAINER_RUNNING));
      } else {
        EXPECT_EQ(state, runtime::v1::CONTAINER_EXITED);
        EXPECT_TRUE(Eventually([&] { return ProcessesOf(container_).empty(); }))
            << "a failed start left processes: " << absl::StrJoin(ProcessesOf(container_), " ");
      }
    }
    EXPECT_THAT(FindLeaks(*daemon_, Scope()), IsEmpty()) << "after " << NameOf(call);
  }

  // The processes in the cgroups of container `id`.
  std::set<std::string> ProcessesOf(const std::string& id) {
    std::set<std::string> pids;
    for (const std::string& hierarchy : CgroupHierarchies()) {
      absl::StatusOr<std::string> in =
          ReadFile(absl::StrCat(hierarchy, cgroup_->parent(), "/", id, "/cgroup.procs"));
      if (!in.ok()) continue;
      for (absl::string_view pid : absl::StrSplit(*in, '\n', absl::SkipEmpty())) {
        pids.emplace(pid);
      }
    }
    return pids;
  }

  // kubelet's retry. Of a start that failed: a new attempt of the container (kubelet does not
  // start an exited container again).
  void Retry(Call call) {
    if (call == Call::kStartContainer && State(container_) != runtime::v1::CONTAINER_CREATED) {
      if (State(container_) == runtime::v1::CONTAINER_RUNNING) return;
      ++attempt_;
      ASSERT_TRUE(Do(Call::kCreateContainer).ok()) << daemon_->Log();
    }
    absl::Status retried = Do(call);
    ASSERT_TRUE(retried.ok()) << "retry of " << NameOf(call) << ": " << retried;
  }

  static TestRegistry* registry_;
  static absl::Status* registry_error_;
  std::unique_ptr<BerthDaemon> daemon_;
  std::string image_;
  std::unique_ptr<PodCgroup> cgroup_;  // the pod's cgroup parent, as kubelet makes it
  std::string pod_;
  std::string container_;
  uint32_t attempt_ = 0;
  std::set<std::string> live_;  // what berthd should have now
  std::set<std::string> ids_;   // everything it told us of
};

TestRegistry* FailpointTest::registry_ = nullptr;
absl::Status* FailpointTest::registry_error_ = nullptr;

TEST_P(FailpointTest, UndoneOrSettledThenRetried) {
  const std::optional<Call> armed = CallOf(failpoint());
  ASSERT_TRUE(armed.has_value()) << "the walk does not know which CRI call drives failpoint \""
                                 << failpoint() << "\": teach CallOf";
  // The stop and remove failpoints meet a pod with a running container. RemovePodSandbox is
  // called on the running pod, so that it stops the pod itself.
  std::vector<Call> flow = {Call::kPullImage, Call::kRunPodSandbox, Call::kCreateContainer,
                            Call::kStartContainer};
  if (*armed != Call::kRemovePodSandbox) flow.push_back(Call::kStopPodSandbox);
  flow.push_back(Call::kRemovePodSandbox);
  for (Call call : flow) {
    absl::Status done = Do(call);
    if (call != *armed) {
      ASSERT_TRUE(done.ok()) << NameOf(call) << ": " << done << "\n" << daemon_->Log();
      continue;
    }
    ASSERT_FALSE(done.ok()) << NameOf(call) << " did not meet failpoint " << failpoint();
    ASSERT_NO_FATAL_FAILURE(ExpectFailpoint(done));
    ASSERT_NO_FATAL_FAILURE(ExpectSettled(call));
    ASSERT_NO_FATAL_FAILURE(Retry(call));
  }
  EXPECT_THAT(FindLeaks(*daemon_, Scope()), IsEmpty());
  // berth.db as the next start would find it (a graceful stop changes nothing there).
  daemon_->Kill();
  EXPECT_THAT(FindStoredLeaks(*daemon_), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    AllFailpoints, FailpointTest,
    ::testing::Combine(::testing::ValuesIn(AllFailpoints()), ::testing::Bool()),
    [](const ::testing::TestParamInfo<FailpointTest::ParamType>& info) {
      return absl::StrCat(absl::StrReplaceAll(std::get<0>(info.param), {{".", "_"}}),
                          std::get<1>(info.param) ? "_kill" : "_error");
    });

}  // namespace
}  // namespace berth::testing
