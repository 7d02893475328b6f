#include "cri/cadvisor_metrics.h"

#include <set>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace berth::cri {
namespace {

using runtime::v1::Metric;
using runtime::v1::MetricType;
using Reading = ContainerReading;

constexpr MetricType kCounter = runtime::v1::COUNTER;
constexpr MetricType kGauge = runtime::v1::GAUGE;
constexpr uint64_t kNsPerSecond = 1000000000;

// cAdvisor's label set, in this order in every descriptor; a metric's own keys come after.
constexpr const char* kBaseKeys[] = {"container", "id", "image", "name", "namespace", "pod"};

struct Extra {
  const char* key = nullptr;
  const char* value = nullptr;
};

// One series of a cgroup reading. A metric with several series (one per extra label value) has
// adjacent rows of the same name.
struct CgroupRow {
  const char* name;
  const char* help;
  MetricType type;
  uint64_t (*value)(const Reading&);
  Extra extra[2] = {};
};

// CRI values are integers: seconds are whole seconds, as cri-o reports them too.
constexpr CgroupRow kCgroupRows[] = {
    {"container_cpu_usage_seconds_total",
     "CPU time used, in seconds.",
     kCounter,
     [](const Reading& r) { return r.cgroup.cpu_usage_ns / kNsPerSecond; },
     {{"cpu", "total"}}},
    {"container_cpu_user_seconds_total", "CPU time used in user mode, in seconds.", kCounter,
     [](const Reading& r) { return r.cgroup.cpu_user_ns / kNsPerSecond; }},
    {"container_cpu_system_seconds_total", "CPU time used in kernel mode, in seconds.", kCounter,
     [](const Reading& r) { return r.cgroup.cpu_system_ns / kNsPerSecond; }},
    {"container_cpu_cfs_periods_total", "CFS quota periods elapsed.", kCounter,
     [](const Reading& r) { return r.cgroup.cpu_periods; }},
    {"container_cpu_cfs_throttled_periods_total",
     "CFS quota periods in which the container was throttled.", kCounter,
     [](const Reading& r) { return r.cgroup.cpu_throttled_periods; }},
    {"container_cpu_cfs_throttled_seconds_total", "Time the container was throttled, in seconds.",
     kCounter, [](const Reading& r) { return r.cgroup.cpu_throttled_ns / kNsPerSecond; }},
    {"container_memory_usage_bytes",
     "Memory charged to the container, page cache included, in bytes.", kGauge,
     [](const Reading& r) { return r.cgroup.memory_usage; }},
    {"container_memory_working_set_bytes", "Memory usage less inactive file pages, in bytes.",
     kGauge, [](const Reading& r) { return r.cgroup.memory_working_set; }},
    {"container_memory_rss", "Anonymous memory, in bytes.", kGauge,
     [](const Reading& r) { return r.cgroup.memory_rss; }},
    {"container_memory_cache", "Page cache, in bytes.", kGauge,
     [](const Reading& r) { return r.cgroup.memory_cache; }},
    {"container_memory_mapped_file", "Memory-mapped files, in bytes.", kGauge,
     [](const Reading& r) { return r.cgroup.memory_mapped_file; }},
    {"container_memory_swap", "Swap used, in bytes.", kGauge,
     [](const Reading& r) { return r.cgroup.swap_usage; }},
    {"container_memory_failcnt", "Times memory usage reached the limit.", kCounter,
     [](const Reading& r) { return r.cgroup.memory_failcnt; }},
    // cAdvisor reports the cgroup's own counters under both scopes.
    {"container_memory_failures_total",
     "Page faults, by type.",
     kCounter,
     [](const Reading& r) { return r.cgroup.page_faults; },
     {{"failure_type", "pgfault"}, {"scope", "container"}}},
    {"container_memory_failures_total",
     "",
     kCounter,
     [](const Reading& r) { return r.cgroup.page_faults; },
     {{"failure_type", "pgfault"}, {"scope", "hierarchy"}}},
    {"container_memory_failures_total",
     "",
     kCounter,
     [](const Reading& r) { return r.cgroup.major_page_faults; },
     {{"failure_type", "pgmajfault"}, {"scope", "container"}}},
    {"container_memory_failures_total",
     "",
     kCounter,
     [](const Reading& r) { return r.cgroup.major_page_faults; },
     {{"failure_type", "pgmajfault"}, {"scope", "hierarchy"}}},
    {"container_spec_memory_limit_bytes", "Memory limit in bytes; 0 for none.", kGauge,
     [](const Reading& r) { return r.cgroup.memory_limit; }},
    {"container_oom_events_total", "Processes of the container killed by the OOM killer.", kCounter,
     [](const Reading& r) { return r.cgroup.oom_kills; }},
    {"container_processes", "Processes in the container.", kGauge,
     [](const Reading& r) { return r.cgroup.processes; }},
    {"container_threads", "Threads in the container.", kGauge,
     [](const Reading& r) { return r.cgroup.threads; }},
    {"container_start_time_seconds", "When the container started, in seconds since the epoch.",
     kGauge,
     [](const Reading& r) { return static_cast<uint64_t>(r.started_at_ns) / kNsPerSecond; }},
    {"container_last_seen", "When the container was last read, in seconds since the epoch.", kGauge,
     [](const Reading& r) { return static_cast<uint64_t>(r.cgroup.timestamp_ns) / kNsPerSecond; }},
};

// One counter of an interface; its extra label is `interface`.
struct NetworkRow {
  const char* name;
  const char* help;
  uint64_t (*value)(const pod::InterfaceSample&);
};

constexpr NetworkRow kNetworkRows[] = {
    {"container_network_receive_bytes_total", "Bytes received.",
     [](const pod::InterfaceSample& i) { return i.rx_bytes; }},
    {"container_network_receive_packets_total", "Packets received.",
     [](const pod::InterfaceSample& i) { return i.rx_packets; }},
    {"container_network_receive_packets_dropped_total", "Received packets dropped.",
     [](const pod::InterfaceSample& i) { return i.rx_dropped; }},
    {"container_network_receive_errors_total", "Receive errors.",
     [](const pod::InterfaceSample& i) { return i.rx_errors; }},
    {"container_network_transmit_bytes_total", "Bytes sent.",
     [](const pod::InterfaceSample& i) { return i.tx_bytes; }},
    {"container_network_transmit_packets_total", "Packets sent.",
     [](const pod::InterfaceSample& i) { return i.tx_packets; }},
    {"container_network_transmit_packets_dropped_total", "Packets dropped while sending.",
     [](const pod::InterfaceSample& i) { return i.tx_dropped; }},
    {"container_network_transmit_errors_total", "Send errors.",
     [](const pod::InterfaceSample& i) { return i.tx_errors; }},
};

Metric* AddMetric(const char* name, MetricType type, const SeriesLabels& labels, uint64_t value,
                  google::protobuf::RepeatedPtrField<Metric>* out) {
  Metric* m = out->Add();
  m->set_name(name);
  m->set_metric_type(type);  // timestamp 0: read now, not from a cache
  for (const std::string* v : {&labels.container, &labels.id, &labels.image, &labels.name,
                               &labels.namespace_name, &labels.pod}) {
    m->add_label_values(*v);
  }
  m->mutable_value()->set_value(value);
  return m;
}

runtime::v1::MetricDescriptor* AddDescriptor(
    const char* name, const char* help,
    google::protobuf::RepeatedPtrField<runtime::v1::MetricDescriptor>* out) {
  runtime::v1::MetricDescriptor* d = out->Add();
  d->set_name(name);
  d->set_help(help);
  for (const char* key : kBaseKeys) d->add_label_keys(key);
  return d;
}

}  // namespace

SeriesLabels ContainerLabels(const pod::Sandbox& sandbox, const pod::Container& container) {
  return {.container = container.spec.name,
          .id = container.id,
          .image = container.image_name.empty() ? container.spec.image : container.image_name,
          .name = absl::StrCat("k8s_", container.Key(sandbox)),
          .namespace_name = sandbox.spec.namespace_name,
          .pod = sandbox.spec.name};
}

SeriesLabels SandboxLabels(const pod::Sandbox& sandbox) {
  return {.container = "POD",
          .id = sandbox.id,
          .image = "",
          .name = absl::StrCat("k8s_POD_", sandbox.Key()),
          .namespace_name = sandbox.spec.namespace_name,
          .pod = sandbox.spec.name};
}

void DescribeMetrics(google::protobuf::RepeatedPtrField<runtime::v1::MetricDescriptor>* out) {
  std::set<std::string_view> described;
  for (const CgroupRow& row : kCgroupRows) {
    if (!described.insert(row.name).second) continue;
    runtime::v1::MetricDescriptor* d = AddDescriptor(row.name, row.help, out);
    for (const Extra& e : row.extra) {
      if (e.key != nullptr) d->add_label_keys(e.key);
    }
  }
  for (const NetworkRow& row : kNetworkRows) {
    AddDescriptor(row.name, row.help, out)->add_label_keys("interface");
  }
}

void AppendCgroupMetrics(const SeriesLabels& labels, const ContainerReading& reading,
                         google::protobuf::RepeatedPtrField<Metric>* out) {
  for (const CgroupRow& row : kCgroupRows) {
    Metric* m = AddMetric(row.name, row.type, labels, row.value(reading), out);
    for (const Extra& e : row.extra) {
      if (e.value != nullptr) m->add_label_values(e.value);
    }
  }
}

void AppendNetworkMetrics(const SeriesLabels& labels,
                          const std::map<std::string, pod::InterfaceSample>& interfaces,
                          google::protobuf::RepeatedPtrField<Metric>* out) {
  for (const auto& [name, sample] : interfaces) {
    for (const NetworkRow& row : kNetworkRows) {
      AddMetric(row.name, kCounter, labels, row.value(sample), out)->add_label_values(name);
    }
  }
}

}  // namespace berth::cri
