// ListMetricDescriptors and ListPodSandboxMetrics the way kubelet's CRI metrics collector uses
// them, through a running berthd with real runc, the CNI bridge (a bridge and subnet of this
// test's own) and a busybox image from a registry on loopback. One monitor (berth-conmon) is
// enough: the metrics come from cgroups and the pod's network namespace.

#include <unistd.h>

#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/e2e/busybox_env.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/eventually.h"
#include "test/lib/process.h"

namespace berth::testing {
namespace {

using runtime::v1::RuntimeService;
using ::testing::ElementsAre;

constexpr char kBridge[] = "berthmet0";
constexpr char kGateway[] = "10.251.9.1";


class CriMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = BusyboxEnv::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    absl::StatusOr<BusyboxEnv> env =
        BusyboxEnv::Start({.bridge = kBridge, .subnet = "10.251.9.0/24", .network = "e2e-met"});
    ASSERT_TRUE(env.ok()) << env.status();
    registry_ = std::move(env->registry);
    daemon_ = std::move(env->daemon);
    image_ = env->image;
    runtime::v1::RunPodSandboxRequest request;
    *request.mutable_config() = PodConfig();
    absl::StatusOr<runtime::v1::RunPodSandboxResponse> pod =
        cri().Call(&RuntimeService::Stub::RunPodSandbox, request);
    ASSERT_TRUE(pod.ok()) << pod.status() << daemon_->Log();
    pod_ = pod->pod_sandbox_id();
  }

  void TearDown() override {
    if (daemon_ && daemon_->running()) {
      absl::Status removed = cri().RemoveAllPodSandboxes();
      EXPECT_TRUE(removed.ok()) << removed << daemon_->Log();
    }
    daemon_.reset();
    BusyboxEnv::RemoveBridge(kBridge);
  }

  CriClient& cri() { return daemon_->client(); }

  runtime::v1::PodSandboxConfig PodConfig() {
    runtime::v1::PodSandboxConfig c;
    c.mutable_metadata()->set_name("metrics");
    c.mutable_metadata()->set_namespace_("e2e");
    c.mutable_metadata()->set_uid("uid-metrics");
    c.set_hostname("metrics");
    c.set_log_directory(daemon_->dir() + "/logs/metrics");
    return c;
  }

  absl::StatusOr<std::string> Create(const std::string& name, std::vector<std::string> command) {
    runtime::v1::CreateContainerRequest request;
    request.set_pod_sandbox_id(pod_);
    runtime::v1::ContainerConfig* c = request.mutable_config();
    c->mutable_metadata()->set_name(name);
    c->mutable_image()->set_image(image_);
    for (const std::string& a : command) c->add_command(a);
    c->set_log_path(name + ".log");
    *request.mutable_sandbox_config() = PodConfig();
    absl::StatusOr<runtime::v1::CreateContainerResponse> created =
        cri().Call(&RuntimeService::Stub::CreateContainer, request);
    if (!created.ok()) return created.status();
    return created->container_id();
  }

  absl::StatusOr<std::string> CreateAndStart(const std::string& name,
                                             std::vector<std::string> command) {
    absl::StatusOr<std::string> id = Create(name, std::move(command));
    if (!id.ok()) return id;
    runtime::v1::StartContainerRequest start;
    start.set_container_id(*id);
    if (absl::Status s = cri().Call(&RuntimeService::Stub::StartContainer, start).status();
        !s.ok()) {
      return s;
    }
    return id;
  }

  absl::StatusOr<runtime::v1::ListPodSandboxMetricsResponse> Metrics() {
    return cri().Call(&RuntimeService::Stub::ListPodSandboxMetrics,
                      runtime::v1::ListPodSandboxMetricsRequest());
  }

  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<BerthDaemon> daemon_;
  std::string image_;
  std::string pod_;
};

using Series = google::protobuf::RepeatedPtrField<runtime::v1::Metric>;

// The value of the first series named `name` whose label `key` is `value` (labels by the
// descriptors' keys); nullopt when there is none.
std::optional<uint64_t> Value(const Series& series,
                              const std::map<std::string, runtime::v1::MetricDescriptor>& descs,
                              const std::string& name, const std::string& key = "",
                              const std::string& value = "") {
  for (const runtime::v1::Metric& m : series) {
    if (m.name() != name) continue;
    if (key.empty()) return m.value().value();
    const runtime::v1::MetricDescriptor& d = descs.at(name);
    for (int i = 0; i < d.label_keys_size() && i < m.label_values_size(); ++i) {
      if (d.label_keys(i) == key && m.label_values(i) == value) return m.value().value();
    }
  }
  return std::nullopt;
}

// Every series as kubelet's collector needs it: a described name, one value per label key.
void ExpectDescribed(const Series& series,
                     const std::map<std::string, runtime::v1::MetricDescriptor>& descs) {
  for (const runtime::v1::Metric& m : series) {
    auto it = descs.find(m.name());
    ASSERT_NE(it, descs.end()) << m.name() << " is not among the descriptors";
    EXPECT_EQ(m.label_values_size(), it->second.label_keys_size()) << m.name();
  }
}

// The labels of the first series named `name`, by key.
std::map<std::string, std::string> LabelsOf(
    const Series& series, const std::map<std::string, runtime::v1::MetricDescriptor>& descs,
    const std::string& name) {
  std::map<std::string, std::string> out;
  for (const runtime::v1::Metric& m : series) {
    if (m.name() != name) continue;
    const runtime::v1::MetricDescriptor& d = descs.at(name);
    for (int i = 0; i < d.label_keys_size() && i < m.label_values_size(); ++i) {
      out[d.label_keys(i)] = m.label_values(i);
    }
    break;
  }
  return out;
}

TEST_F(CriMetricsTest, KubeletsCadvisorMetricsFromTheRuntime) {
  absl::StatusOr<runtime::v1::ListMetricDescriptorsResponse> listed = cri().Call(
      &RuntimeService::Stub::ListMetricDescriptors, runtime::v1::ListMetricDescriptorsRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  std::map<std::string, runtime::v1::MetricDescriptor> descs;
  for (const runtime::v1::MetricDescriptor& d : listed->descriptors()) descs[d.name()] = d;

  absl::StatusOr<std::string> burn = CreateAndStart("burn", {"sh", "-c", "while :; do :; done"});
  ASSERT_TRUE(burn.ok()) << burn.status() << daemon_->Log();
  absl::StatusOr<std::string> idle = Create("idle", {"sleep", "1000"});  // created, not running
  ASSERT_TRUE(idle.ok()) << idle.status();
  // Some traffic on eth0: the bridge answers a ping.
  runtime::v1::ExecSyncRequest ping;
  ping.set_container_id(*burn);
  for (const char* a : {"busybox", "ping", "-c", "1", "-W", "5", kGateway}) ping.add_cmd(a);
  absl::StatusOr<runtime::v1::ExecSyncResponse> pinged =
      cri().Call(&RuntimeService::Stub::ExecSync, ping);
  ASSERT_TRUE(pinged.ok()) << pinged.status();
  EXPECT_EQ(pinged->exit_code(), 0) << pinged->stdout() << pinged->stderr();

  // The container's series, polled until its CPU counter (whole seconds) reaches `at_least`.
  absl::StatusOr<runtime::v1::ListPodSandboxMetricsResponse> metrics;
  const runtime::v1::ContainerMetrics* burning = nullptr;
  auto cpu_reaches = [&](uint64_t at_least) {
    return Eventually([&] {
      metrics = Metrics();
      if (!metrics.ok() || metrics->pod_metrics_size() != 1) return false;
      for (const runtime::v1::ContainerMetrics& c : metrics->pod_metrics(0).container_metrics()) {
        if (c.container_id() != *burn) continue;
        burning = &c;
        return Value(c.metrics(), descs, "container_cpu_usage_seconds_total").value_or(0) >=
               at_least;
      }
      return false;
    }, std::chrono::seconds(60));  // whole CPU seconds, on a loaded machine
  };
  ASSERT_TRUE(cpu_reaches(1)) << metrics.status();
  const uint64_t cpu = *Value(burning->metrics(), descs, "container_cpu_usage_seconds_total");
  ASSERT_TRUE(cpu_reaches(cpu + 1)) << "the CPU counter stayed at " << cpu;

  const runtime::v1::PodSandboxMetrics& pod = metrics->pod_metrics(0);
  EXPECT_EQ(pod.pod_sandbox_id(), pod_);
  ExpectDescribed(pod.metrics(), descs);
  ASSERT_EQ(pod.container_metrics_size(), 1) << "only the running container has series";
  ExpectDescribed(burning->metrics(), descs);

  const Series& c = burning->metrics();
  EXPECT_GT(Value(c, descs, "container_memory_working_set_bytes").value_or(0), 0u);
  EXPECT_GT(Value(c, descs, "container_start_time_seconds").value_or(0), 0u);
  EXPECT_GE(Value(c, descs, "container_processes").value_or(0), 1u);
  std::map<std::string, std::string> labels =
      LabelsOf(c, descs, "container_memory_working_set_bytes");
  EXPECT_EQ(labels["container"], "burn");
  EXPECT_EQ(labels["id"], *burn);
  EXPECT_EQ(labels["pod"], "metrics");
  EXPECT_EQ(labels["namespace"], "e2e");
  EXPECT_EQ(labels["image"], image_);

  // The pod's own series: the infra process and eth0 of its network namespace.
  labels = LabelsOf(pod.metrics(), descs, "container_network_receive_bytes_total");
  EXPECT_EQ(labels["container"], "POD");
  EXPECT_EQ(labels["id"], pod_);
  EXPECT_EQ(labels["pod"], "metrics");
  for (const char* name :
       {"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
        "container_network_receive_packets_total", "container_network_transmit_packets_total"}) {
    EXPECT_GT(Value(pod.metrics(), descs, name, "interface", "eth0").value_or(0), 0u) << name;
  }
  for (const char* name :
       {"container_network_receive_errors_total", "container_network_transmit_errors_total"}) {
    EXPECT_TRUE(Value(pod.metrics(), descs, name, "interface", "eth0").has_value()) << name;
  }
  EXPECT_EQ(LabelsOf(pod.metrics(), descs, "container_memory_working_set_bytes")["container"],
            "POD");
}

TEST_F(CriMetricsTest, NoSeriesOnceThePodIsStopped) {
  absl::StatusOr<std::string> id = CreateAndStart("sleeper", {"sleep", "1000"});
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<runtime::v1::ListPodSandboxMetricsResponse> before = Metrics();
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->pod_metrics_size(), 1);
  EXPECT_EQ(before->pod_metrics(0).container_metrics_size(), 1);

  runtime::v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod_);
  ASSERT_TRUE(cri().Call(&RuntimeService::Stub::StopPodSandbox, stop).ok());
  absl::StatusOr<runtime::v1::ListPodSandboxMetricsResponse> after = Metrics();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_THAT(after->pod_metrics(), ElementsAre());
}

}  // namespace
}  // namespace berth::testing
