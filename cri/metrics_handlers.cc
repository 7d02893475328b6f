// ListMetricDescriptors and ListPodSandboxMetrics: cAdvisor-named metrics of the running
// containers and ready pods, which kubelet serves at /metrics/cadvisor when its feature gate
// PodAndContainerStatsFromCRI is on (cAdvisor itself only knows containerd's and cri-o's
// containers).

#include "cri/cadvisor_metrics.h"
#include "cri/runtime_service.h"
#include "pod/cgroup_stats.h"

namespace berth::cri {

grpc::Status RuntimeService::ListMetricDescriptors(
    grpc::ServerContext*, const runtime::v1::ListMetricDescriptorsRequest*,
    runtime::v1::ListMetricDescriptorsResponse* response) {
  DescribeMetrics(response->mutable_descriptors());
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListPodSandboxMetrics(
    grpc::ServerContext*, const runtime::v1::ListPodSandboxMetricsRequest*,
    runtime::v1::ListPodSandboxMetricsResponse* response) {
  // Only a running process has a cgroup to read: created and exited containers have no series,
  // as cAdvisor has none for a cgroup that is gone.
  std::map<std::string, std::vector<pod::ContainerPtr>> running;
  for (const pod::ContainerPtr& c : containers_->List()) {
    if (c->state == pod::Container::State::kRunning) running[c->sandbox_id].push_back(c);
  }
  for (const pod::SandboxPtr& s : sandboxes_->List()) {
    if (s->state != pod::Sandbox::State::kReady) continue;
    FillSandboxMetrics(*s, running[s->id], response->add_pod_metrics());
  }
  return grpc::Status::OK;
}

void RuntimeService::FillSandboxMetrics(const pod::Sandbox& s,
                                        const std::vector<pod::ContainerPtr>& containers,
                                        runtime::v1::PodSandboxMetrics* out) {
  out->set_pod_sandbox_id(s.id);
  const SeriesLabels pod_labels = SandboxLabels(s);
  // The infra process stands for the pod, as cAdvisor's infra container ("POD") does.
  if (absl::StatusOr<pod::CgroupSample> pause = pod::ReadCgroup(s.pid); pause.ok()) {
    AppendCgroupMetrics(pod_labels, {.cgroup = *pause, .started_at_ns = s.created_at_ns},
                        out->mutable_metrics());
  }
  // The containers share the pod's network namespace: its counters belong to the pod alone.
  if (!s.spec.host_network) {
    AppendNetworkMetrics(pod_labels, pod::ReadInterfaces(s.pid), out->mutable_metrics());
  }
  for (const pod::ContainerPtr& c : containers) {
    absl::StatusOr<pod::CgroupSample> sample = pod::ReadCgroup(c->pid);
    if (!sample.ok()) continue;  // exited since the listing
    runtime::v1::ContainerMetrics* cm = out->add_container_metrics();
    cm->set_container_id(c->id);
    AppendCgroupMetrics(ContainerLabels(s, *c),
                        {.cgroup = *sample, .started_at_ns = c->started_at_ns},
                        cm->mutable_metrics());
  }
}

}  // namespace berth::cri
