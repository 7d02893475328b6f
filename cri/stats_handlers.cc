// ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats, from the cgroups of
// the containers' processes (v1 and v2) and the pod's network namespace.

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cri/grpc_status.h"
#include "cri/helpers.h"
#include "cri/runtime_service.h"
#include "cri/stats_convert.h"
#include "image/rootfs.h"
#include "pod/cgroup_stats.h"

namespace berth::cri {

void RuntimeService::FillContainerStats(const pod::Container& c, runtime::v1::ContainerStats* out) {
  runtime::v1::ContainerAttributes* a = out->mutable_attributes();
  a->set_id(c.id);
  a->mutable_metadata()->set_name(c.spec.name);
  a->mutable_metadata()->set_attempt(c.spec.attempt);
  a->mutable_labels()->insert(c.spec.labels.begin(), c.spec.labels.end());
  a->mutable_annotations()->insert(c.spec.annotations.begin(), c.spec.annotations.end());
  if (c.state == pod::Container::State::kRunning) {
    absl::StatusOr<pod::CgroupSample> s = pod::ReadCgroup(c.pid);
    if (s.ok()) {
      cpu_rates_.Fill(c.id, &*s);
      FillCpu(*s, out->mutable_cpu());
      FillMemory(*s, out->mutable_memory());
      out->mutable_swap()->set_timestamp(s->timestamp_ns);
      out->mutable_swap()->mutable_swap_usage_bytes()->set_value(s->swap_usage);
    }
  }
  const image::UsageCache::Sample layer = layer_usage_.Get(c.id, containers_->ContainerDir(c.id));
  runtime::v1::FilesystemUsage* fs = out->mutable_writable_layer();
  fs->set_timestamp(layer.timestamp_ns);
  fs->mutable_fs_id()->set_mountpoint(config_->Get()->root);
  fs->mutable_used_bytes()->set_value(static_cast<uint64_t>(layer.usage.bytes));
  fs->mutable_inodes_used()->set_value(static_cast<uint64_t>(layer.usage.inodes));
}

void RuntimeService::FillSandboxStats(const pod::Sandbox& s, runtime::v1::PodSandboxStats* out) {
  runtime::v1::PodSandboxAttributes* a = out->mutable_attributes();
  a->set_id(s.id);
  a->mutable_metadata()->set_name(s.spec.name);
  a->mutable_metadata()->set_uid(s.spec.uid);
  a->mutable_metadata()->set_namespace_(s.spec.namespace_name);
  a->mutable_metadata()->set_attempt(s.spec.attempt);
  a->mutable_labels()->insert(s.spec.labels.begin(), s.spec.labels.end());
  a->mutable_annotations()->insert(s.spec.annotations.begin(), s.spec.annotations.end());
  runtime::v1::LinuxPodSandboxStats* linux = out->mutable_linux();
  // The pod's usage: its pause process and its containers.
  pod::CgroupSample total;
  total.timestamp_ns = absl::ToUnixNanos(absl::Now());
  auto add = [&](const pod::CgroupSample& x) {
    total.cpu_usage_ns += x.cpu_usage_ns;
    total.memory_usage += x.memory_usage;
    total.memory_working_set += x.memory_working_set;
    total.memory_rss += x.memory_rss;
    total.page_faults += x.page_faults;
    total.major_page_faults += x.major_page_faults;
    total.processes += x.processes;
  };
  const bool ready = s.state == pod::Sandbox::State::kReady;
  if (ready) {
    if (absl::StatusOr<pod::CgroupSample> pause = pod::ReadCgroup(s.pid); pause.ok()) add(*pause);
  }
  for (const pod::ContainerPtr& c : containers_->List()) {
    if (c->sandbox_id != s.id) continue;
    runtime::v1::ContainerStats* cs = linux->add_containers();
    FillContainerStats(*c, cs);
    if (c->state == pod::Container::State::kRunning) {
      if (absl::StatusOr<pod::CgroupSample> x = pod::ReadCgroup(c->pid); x.ok()) add(*x);
    }
  }
  if (!ready) return;
  cpu_rates_.Fill("pod/" + s.id, &total);
  FillCpu(total, linux->mutable_cpu());
  FillMemory(total, linux->mutable_memory());
  linux->mutable_process()->set_timestamp(total.timestamp_ns);
  linux->mutable_process()->mutable_process_count()->set_value(total.processes);
  if (!s.spec.host_network) {
    runtime::v1::NetworkUsage network;
    if (FillNetwork(pod::ReadInterfaces(s.pid), total.timestamp_ns, &network)) {
      *linux->mutable_network() = std::move(network);
    }
  }
}

grpc::Status RuntimeService::ContainerStats(grpc::ServerContext*,
                                            const runtime::v1::ContainerStatsRequest* request,
                                            runtime::v1::ContainerStatsResponse* response) {
  absl::StatusOr<pod::ContainerPtr> c = containers_->Get(request->container_id());
  if (!c.ok()) return ToGrpcStatus(c.status());
  FillContainerStats(**c, response->mutable_stats());
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListContainerStats(
    grpc::ServerContext*, const runtime::v1::ListContainerStatsRequest* request,
    runtime::v1::ListContainerStatsResponse* response) {
  const runtime::v1::ContainerStatsFilter& f = request->filter();
  for (const pod::ContainerPtr& c : containers_->List()) {
    if (!f.id().empty() && !absl::StartsWith(c->id, f.id())) continue;
    if (!f.pod_sandbox_id().empty() && !absl::StartsWith(c->sandbox_id, f.pod_sandbox_id())) {
      continue;
    }
    if (!LabelsMatch(c->spec.labels, f.label_selector())) continue;
    // kubelet lists the stats of live containers.
    if (c->state != pod::Container::State::kRunning) continue;
    FillContainerStats(*c, response->add_stats());
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeService::PodSandboxStats(grpc::ServerContext*,
                                             const runtime::v1::PodSandboxStatsRequest* request,
                                             runtime::v1::PodSandboxStatsResponse* response) {
  absl::StatusOr<pod::SandboxPtr> s = sandboxes_->Get(request->pod_sandbox_id());
  if (!s.ok()) return ToGrpcStatus(s.status());
  FillSandboxStats(**s, response->mutable_stats());
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListPodSandboxStats(
    grpc::ServerContext*, const runtime::v1::ListPodSandboxStatsRequest* request,
    runtime::v1::ListPodSandboxStatsResponse* response) {
  const runtime::v1::PodSandboxStatsFilter& f = request->filter();
  for (const pod::SandboxPtr& s : sandboxes_->List()) {
    if (!f.id().empty() && !absl::StartsWith(s->id, f.id())) continue;
    if (!LabelsMatch(s->spec.labels, f.label_selector())) continue;
    if (s->state != pod::Sandbox::State::kReady) continue;
    FillSandboxStats(*s, response->add_stats());
  }
  return grpc::Status::OK;
}

}  // namespace berth::cri
