// kubelet gives up on a create that takes longer than its runtime request timeout and retries it
// with the same name and config. The create that finished meanwhile is kept for that retry (as
// cri-o does), hidden from lists until claimed; another config for the name is refused.

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/e2e/busybox_env.h"
#include "test/lib/eventually.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using runtime::v1::RuntimeService;

constexpr char kBridge[] = "berthe2e11";

class RetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = BusyboxEnv::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    char tmpl[] = "/tmp/berth-e2e-retry.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // A monitor that takes 3 s to start while <dir>/slow exists: longer than the caller waits.
    const std::string berthd = std::getenv("BERTHD");
    const std::string conmon = absl::StrCat(std::filesystem::path(berthd).parent_path().parent_path().string(),
                                            "/libexec/berth/berth-conmon");
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/monitor",
                                absl::StrCat("#!/bin/sh\n[ -e ", dir_, "/slow ] && sleep 3\nexec ",
                                             conmon, " \"$@\"\n"),
                                0755)
                    .ok());
    absl::StatusOr<BusyboxEnv> env = BusyboxEnv::Start(
        {.bridge = kBridge,
         .subnet = "10.251.11.0/24",
         .network = "e2e-retry",
         .extra_yaml = absl::StrCat("monitor: {path: ", dir_, "/monitor}\n")});
    ASSERT_TRUE(env.ok()) << env.status();
    registry_ = std::move(env->registry);
    daemon_ = std::move(env->daemon);
    image_ = env->image;
  }

  void TearDown() override {
    if (daemon_ && daemon_->running()) {
      cri().set_deadline(std::chrono::seconds(60));
      absl::Status removed = cri().RemoveAllPodSandboxes();
      EXPECT_TRUE(removed.ok()) << removed << daemon_->Log();
    }
    daemon_.reset();
    BusyboxEnv::RemoveBridge(kBridge);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  CriClient& cri() { return daemon_->client(); }
  void Slow(bool slow) {
    if (slow) {
      ASSERT_TRUE(WriteFileAtomic(dir_ + "/slow", "").ok());
    } else {
      std::filesystem::remove(dir_ + "/slow");
    }
  }

  runtime::v1::PodSandboxConfig PodConfig(const std::string& name) {
    return E2ePodConfig(*daemon_, name);
  }
  absl::StatusOr<std::string> RunPod(const runtime::v1::PodSandboxConfig& config,
                                     std::chrono::milliseconds deadline) {
    runtime::v1::RunPodSandboxRequest request;
    *request.mutable_config() = config;
    cri().set_deadline(deadline);
    absl::StatusOr<runtime::v1::RunPodSandboxResponse> r =
        cri().Call(&RuntimeService::Stub::RunPodSandbox, request);
    cri().set_deadline(std::chrono::seconds(30));
    if (!r.ok()) return r.status();
    return r->pod_sandbox_id();
  }
  absl::StatusOr<std::string> Create(const std::string& pod, const runtime::v1::ContainerConfig& c,
                                     std::chrono::milliseconds deadline) {
    runtime::v1::CreateContainerRequest request;
    request.set_pod_sandbox_id(pod);
    *request.mutable_config() = c;
    *request.mutable_sandbox_config() = PodConfig("pod");
    cri().set_deadline(deadline);
    absl::StatusOr<runtime::v1::CreateContainerResponse> r =
        cri().Call(&RuntimeService::Stub::CreateContainer, request);
    cri().set_deadline(std::chrono::seconds(30));
    if (!r.ok()) return r.status();
    return r->container_id();
  }
  int Pods() {
    return cri().Call(&RuntimeService::Stub::ListPodSandbox, runtime::v1::ListPodSandboxRequest())
        ->items_size();
  }
  int Containers() {
    return cri().Call(&RuntimeService::Stub::ListContainers, runtime::v1::ListContainersRequest())
        ->containers_size();
  }

  std::string dir_, image_;
  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<BerthDaemon> daemon_;
};

TEST_F(RetryTest, ASandboxFinishedAfterItsCallerLeftIsHandedToTheRetry) {
  Slow(true);
  absl::StatusOr<std::string> first = RunPod(PodConfig("pod"), std::chrono::seconds(1));
  ASSERT_TRUE(absl::IsDeadlineExceeded(first.status())) << first.status();
  // Finished meanwhile, but kubelet does not know it: not listed.
  ASSERT_TRUE(Eventually([&] { return daemon_->Log().find("caller gave up") != std::string::npos; }))
      << daemon_->Log();
  EXPECT_EQ(Pods(), 0);

  runtime::v1::PodSandboxConfig other = PodConfig("pod");
  (*other.mutable_labels())["changed"] = "yes";
  absl::StatusOr<std::string> refused = RunPod(other, std::chrono::seconds(30));
  EXPECT_TRUE(absl::IsAlreadyExists(refused.status())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("different config"));

  Slow(false);
  absl::StatusOr<std::string> retry = RunPod(PodConfig("pod"), std::chrono::seconds(30));
  ASSERT_TRUE(retry.ok()) << retry.status() << daemon_->Log();
  EXPECT_EQ(Pods(), 1);
  EXPECT_THAT(daemon_->Log(), HasSubstr("handed to the retry"));
}

TEST_F(RetryTest, ARetryWhileTheCreateIsStillUnderWayWaitsForIt) {
#ifndef BERTH_FAILPOINTS
  GTEST_SKIP() << "the slow create is a failpoint's delay: a build with BERTH_FAILPOINTS";
#endif
  // CreateContainer starts no process (the monitor and the runtime come at StartContainer): its
  // slow step is a failpoint's delay, longer than the caller waits.
  daemon_->Kill();
  ASSERT_TRUE(
      daemon_->Start({"BERTH_FAILPOINTS=container.create.spec_written=delay:3000*1"}).ok())
      << daemon_->Log();
  absl::StatusOr<std::string> pod = RunPod(PodConfig("pod"), std::chrono::seconds(30));
  ASSERT_TRUE(pod.ok()) << pod.status();
  runtime::v1::ContainerConfig c;
  c.mutable_metadata()->set_name("app");
  c.mutable_image()->set_image(image_);
  c.add_command("sleep");
  c.add_command("1000");
  c.set_log_path("app.log");
  absl::StatusOr<std::string> first = Create(*pod, c, std::chrono::seconds(1));
  ASSERT_TRUE(absl::IsDeadlineExceeded(first.status())) << first.status();
  // Retried at once, as kubelet's next sync may: it waits for the create under way.
  absl::StatusOr<std::string> retry = Create(*pod, c, std::chrono::seconds(30));
  ASSERT_TRUE(retry.ok()) << retry.status() << daemon_->Log();
  EXPECT_EQ(Containers(), 1);
  runtime::v1::StartContainerRequest start;
  start.set_container_id(*retry);
  EXPECT_TRUE(cri().Call(&RuntimeService::Stub::StartContainer, start).ok());
}

}  // namespace
}  // namespace berth::testing
