#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "api.pb.h"
#include "pod/cgroup_stats.h"
#include "pod/container.h"
#include "pod/sandbox.h"

namespace berth::cri {

// Container metrics under cAdvisor's names and labels, for the CRI's ListMetricDescriptors and
// ListPodSandboxMetrics: with PodAndContainerStatsFromCRI, kubelet serves /metrics/cadvisor from
// them, so dashboards written for cAdvisor keep working. Pure conversions, no I/O.

// The labels kubelet's cAdvisor collector puts on every series (containerPrometheusLabelsFunc).
struct SeriesLabels {
  std::string container;  // the CRI container name; "POD" for the pod's infra
  std::string id;         // container id; sandbox id for the pod
  std::string image;
  std::string name;  // k8s_<container>_<pod>_<namespace>_<uid>_<attempt>
  std::string namespace_name;
  std::string pod;
};

SeriesLabels ContainerLabels(const pod::Sandbox& sandbox, const pod::Container& container);
// The pod's own series (its infra process and its network), as cAdvisor shows the infra
// container.
SeriesLabels SandboxLabels(const pod::Sandbox& sandbox);

// One live reading of a container's (or the pod infra's) cgroup.
struct ContainerReading {
  pod::CgroupSample cgroup;
  int64_t started_at_ns = 0;
};

// Every metric the two functions below produce, each name once, with its label keys. kubelet
// reads them once at its start and drops a series whose name is not among them.
void DescribeMetrics(google::protobuf::RepeatedPtrField<runtime::v1::MetricDescriptor>* out);

// Appends the cpu, memory, process and time series of one reading to `out`.
void AppendCgroupMetrics(const SeriesLabels& labels, const ContainerReading& reading,
                         google::protobuf::RepeatedPtrField<runtime::v1::Metric>* out);

// Appends the series of a pod's network interfaces (label `interface`) to `out`.
void AppendNetworkMetrics(const SeriesLabels& labels,
                          const std::map<std::string, pod::InterfaceSample>& interfaces,
                          google::protobuf::RepeatedPtrField<runtime::v1::Metric>* out);

}  // namespace berth::cri
