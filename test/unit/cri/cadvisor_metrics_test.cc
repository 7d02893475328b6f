#include "cri/cadvisor_metrics.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::cri {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

using Metrics = google::protobuf::RepeatedPtrField<runtime::v1::Metric>;

std::map<std::string, runtime::v1::MetricDescriptor> Descriptors() {
  google::protobuf::RepeatedPtrField<runtime::v1::MetricDescriptor> list;
  DescribeMetrics(&list);
  std::map<std::string, runtime::v1::MetricDescriptor> out;
  for (const runtime::v1::MetricDescriptor& d : list) {
    EXPECT_TRUE(out.emplace(d.name(), d).second) << "described twice: " << d.name();
  }
  return out;
}

// The series of `name` whose labels, in descriptor order, end with `tail`.
const runtime::v1::Metric* Find(const Metrics& metrics, const std::string& name,
                                std::vector<std::string> tail = {}) {
  for (const runtime::v1::Metric& m : metrics) {
    if (m.name() != name || m.label_values_size() < static_cast<int>(tail.size())) continue;
    std::vector<std::string> last(m.label_values().end() - static_cast<int>(tail.size()),
                                  m.label_values().end());
    if (last == tail) return &m;
  }
  return nullptr;
}

// kubelet's collector needs both: a described name, and one value per label key.
void ExpectDescribed(const Metrics& metrics) {
  const std::map<std::string, runtime::v1::MetricDescriptor> descriptors = Descriptors();
  std::set<std::vector<std::string>> series;
  for (const runtime::v1::Metric& m : metrics) {
    auto it = descriptors.find(m.name());
    ASSERT_NE(it, descriptors.end()) << m.name() << " is not described";
    EXPECT_EQ(m.label_values_size(), it->second.label_keys_size()) << m.name();
    EXPECT_EQ(m.timestamp(), 0) << m.name();
    std::vector<std::string> key = {m.name()};
    key.insert(key.end(), m.label_values().begin(), m.label_values().end());
    EXPECT_TRUE(series.insert(key).second) << "a series twice: " << m.name();
  }
}

SeriesLabels Labels() {
  return {.container = "web",
          .id = "c1",
          .image = "busybox:1",
          .name = "k8s_web_p_ns_u_0",
          .namespace_name = "ns",
          .pod = "p"};
}

TEST(CadvisorMetricsTest, DescriptorsCarryCadvisorsLabels) {
  const std::map<std::string, runtime::v1::MetricDescriptor> descriptors = Descriptors();
  for (const char* name :
       {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
        "container_memory_usage_bytes", "container_memory_rss", "container_spec_memory_limit_bytes",
        "container_oom_events_total", "container_processes", "container_last_seen",
        "container_start_time_seconds", "container_network_receive_bytes_total",
        "container_network_transmit_errors_total"}) {
    ASSERT_TRUE(descriptors.contains(name)) << name;
  }
  for (const auto& [name, d] : descriptors) {
    EXPECT_FALSE(d.help().empty()) << name;
    ASSERT_GE(d.label_keys_size(), 6) << name;
    EXPECT_THAT(std::vector<std::string>(d.label_keys().begin(), d.label_keys().begin() + 6),
                ElementsAre("container", "id", "image", "name", "namespace", "pod"))
        << name;
  }
  EXPECT_THAT(descriptors.at("container_cpu_usage_seconds_total").label_keys(),
              ::testing::Contains("cpu"));
  EXPECT_EQ(descriptors.at("container_network_receive_bytes_total").label_keys(6), "interface");
}

TEST(CadvisorMetricsTest, CgroupReadingInCadvisorsUnits) {
  ContainerReading r;
  r.cgroup.timestamp_ns = int64_t{1700000000} * 1000000000 + 999;
  r.cgroup.cpu_usage_ns = 2999999999;  // whole seconds only: 2
  r.cgroup.cpu_user_ns = 2000000000;
  r.cgroup.cpu_system_ns = 999999999;
  r.cgroup.memory_usage = 5000;
  r.cgroup.memory_working_set = 4000;
  r.cgroup.memory_limit = 1 << 20;
  r.cgroup.oom_kills = 3;
  r.cgroup.page_faults = 70;
  r.cgroup.major_page_faults = 7;
  r.cgroup.processes = 2;
  r.cgroup.threads = 5;
  r.started_at_ns = int64_t{1600000000} * 1000000000 + 5;
  Metrics metrics;
  AppendCgroupMetrics(Labels(), r, &metrics);
  ExpectDescribed(metrics);

  const runtime::v1::Metric* cpu = Find(metrics, "container_cpu_usage_seconds_total");
  ASSERT_NE(cpu, nullptr);
  EXPECT_THAT(cpu->label_values(),
              ElementsAre("web", "c1", "busybox:1", "k8s_web_p_ns_u_0", "ns", "p", "total"));
  EXPECT_EQ(cpu->metric_type(), runtime::v1::COUNTER);
  EXPECT_EQ(cpu->value().value(), 2u);
  EXPECT_EQ(Find(metrics, "container_cpu_user_seconds_total")->value().value(), 2u);
  EXPECT_EQ(Find(metrics, "container_cpu_system_seconds_total")->value().value(), 0u);
  const runtime::v1::Metric* ws = Find(metrics, "container_memory_working_set_bytes");
  EXPECT_EQ(ws->metric_type(), runtime::v1::GAUGE);
  EXPECT_EQ(ws->value().value(), 4000u);
  EXPECT_EQ(Find(metrics, "container_memory_usage_bytes")->value().value(), 5000u);
  EXPECT_EQ(Find(metrics, "container_spec_memory_limit_bytes")->value().value(), 1u << 20);
  EXPECT_EQ(Find(metrics, "container_oom_events_total")->value().value(), 3u);
  EXPECT_EQ(Find(metrics, "container_processes")->value().value(), 2u);
  EXPECT_EQ(Find(metrics, "container_threads")->value().value(), 5u);
  EXPECT_EQ(Find(metrics, "container_start_time_seconds")->value().value(), 1600000000u);
  EXPECT_EQ(Find(metrics, "container_last_seen")->value().value(), 1700000000u);
  const runtime::v1::Metric* pgfault =
      Find(metrics, "container_memory_failures_total", {"pgfault", "container"});
  ASSERT_NE(pgfault, nullptr);
  EXPECT_EQ(pgfault->value().value(), 70u);
  const runtime::v1::Metric* pgmajfault =
      Find(metrics, "container_memory_failures_total", {"pgmajfault", "hierarchy"});
  ASSERT_NE(pgmajfault, nullptr);
  EXPECT_EQ(pgmajfault->value().value(), 7u);
}

TEST(CadvisorMetricsTest, OneSeriesPerInterfaceCounter) {
  std::map<std::string, pod::InterfaceSample> interfaces;
  interfaces["eth0"] = {.rx_bytes = 100,
                        .rx_packets = 2,
                        .rx_errors = 1,
                        .rx_dropped = 3,
                        .tx_bytes = 50,
                        .tx_packets = 1,
                        .tx_errors = 4,
                        .tx_dropped = 5};
  interfaces["net1"] = {.rx_bytes = 7};
  Metrics metrics;
  AppendNetworkMetrics(Labels(), interfaces, &metrics);
  ExpectDescribed(metrics);
  EXPECT_EQ(metrics.size(), 16);
  auto value = [&](const std::string& name, const std::string& interface) {
    const runtime::v1::Metric* m = Find(metrics, name, {interface});
    EXPECT_NE(m, nullptr) << name << " " << interface;
    return m == nullptr ? ~uint64_t{0} : m->value().value();
  };
  EXPECT_EQ(value("container_network_receive_bytes_total", "eth0"), 100u);
  EXPECT_EQ(value("container_network_receive_packets_total", "eth0"), 2u);
  EXPECT_EQ(value("container_network_receive_errors_total", "eth0"), 1u);
  EXPECT_EQ(value("container_network_receive_packets_dropped_total", "eth0"), 3u);
  EXPECT_EQ(value("container_network_transmit_bytes_total", "eth0"), 50u);
  EXPECT_EQ(value("container_network_transmit_packets_total", "eth0"), 1u);
  EXPECT_EQ(value("container_network_transmit_errors_total", "eth0"), 4u);
  EXPECT_EQ(value("container_network_transmit_packets_dropped_total", "eth0"), 5u);
  EXPECT_EQ(value("container_network_receive_bytes_total", "net1"), 7u);
  for (const runtime::v1::Metric& m : metrics) EXPECT_EQ(m.metric_type(), runtime::v1::COUNTER);

  Metrics none;
  AppendNetworkMetrics(Labels(), {}, &none);
  EXPECT_THAT(none, IsEmpty());
}

TEST(CadvisorMetricsTest, LabelsOfAContainerAndOfItsPod) {
  pod::Sandbox s;
  s.id = "s1";
  s.spec.name = "web-0";
  s.spec.namespace_name = "shop";
  s.spec.uid = "u-1";
  s.spec.attempt = 2;
  pod::Container c;
  c.id = "c1";
  c.sandbox_id = "s1";
  c.spec.name = "nginx";
  c.spec.attempt = 1;
  c.spec.image = "sha256:abc";
  c.image_name = "example.test/nginx:1.25";
  const SeriesLabels container = ContainerLabels(s, c);
  EXPECT_EQ(container.container, "nginx");
  EXPECT_EQ(container.id, "c1");
  EXPECT_EQ(container.image, "example.test/nginx:1.25");
  EXPECT_EQ(container.name, "k8s_nginx_web-0_shop_u-1_1");
  EXPECT_EQ(container.namespace_name, "shop");
  EXPECT_EQ(container.pod, "web-0");
  c.image_name.clear();  // created from an image id alone
  EXPECT_EQ(ContainerLabels(s, c).image, "sha256:abc");

  const SeriesLabels pod = SandboxLabels(s);
  EXPECT_EQ(pod.container, "POD");
  EXPECT_EQ(pod.id, "s1");
  EXPECT_EQ(pod.image, "");
  EXPECT_EQ(pod.name, "k8s_POD_web-0_shop_u-1_2");
  EXPECT_EQ(pod.namespace_name, "shop");
  EXPECT_EQ(pod.pod, "web-0");
}

}  // namespace
}  // namespace berth::cri
