// RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox.

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "cri/grpc_status.h"
#include "cri/helpers.h"
#include "cri/resources.h"
#include "cri/runtime_service.h"

#include "base/logging.h"
#include "nlohmann/json.hpp"

namespace berth::cri {
namespace {

using runtime::v1::NamespaceMode;

pod::SandboxSpec ToSpec(const runtime::v1::RunPodSandboxRequest& request) {
  const runtime::v1::PodSandboxConfig& c = request.config();
  pod::SandboxSpec spec;
  spec.name = c.metadata().name();
  spec.uid = c.metadata().uid();
  spec.namespace_name = c.metadata().namespace_();
  spec.attempt = c.metadata().attempt();
  spec.hostname = c.hostname();
  spec.log_directory = c.log_directory();
  if (c.has_dns_config()) {
    spec.dns = pod::DnsSettings{{c.dns_config().servers().begin(), c.dns_config().servers().end()},
                                {c.dns_config().searches().begin(), c.dns_config().searches().end()},
                                {c.dns_config().options().begin(), c.dns_config().options().end()}};
  }
  for (const runtime::v1::PortMapping& p : c.port_mappings()) {
    // kubelet lists every containerPort; only those with a hostPort are mapped (portmap rejects 0).
    if (p.host_port() <= 0) continue;
    const char* protocol = p.protocol() == runtime::v1::UDP    ? "udp"
                           : p.protocol() == runtime::v1::SCTP ? "sctp"
                                                               : "tcp";
    spec.port_mappings.push_back({protocol, p.container_port(), p.host_port(), p.host_ip()});
  }
  spec.labels = {c.labels().begin(), c.labels().end()};
  spec.annotations = {c.annotations().begin(), c.annotations().end()};
  spec.cgroup_parent = c.linux().cgroup_parent();
  if (c.linux().has_resources()) spec.resources = ToResources(c.linux().resources());
  if (c.linux().has_overhead()) spec.overhead = ToResources(c.linux().overhead());
  spec.sysctls = {c.linux().sysctls().begin(), c.linux().sysctls().end()};
  const runtime::v1::NamespaceOption& ns = c.linux().security_context().namespace_options();
  spec.host_network = ns.network() == runtime::v1::NODE;
  spec.host_ipc = ns.ipc() == runtime::v1::NODE;
  spec.pid_mode = static_cast<pod::NamespaceMode>(ns.pid());
  spec.runtime_handler = request.runtime_handler();
  return spec;
}

void FillMetadata(const pod::Sandbox& s, runtime::v1::PodSandboxMetadata* m) {
  m->set_name(s.spec.name);
  m->set_uid(s.spec.uid);
  m->set_namespace_(s.spec.namespace_name);
  m->set_attempt(s.spec.attempt);
}

runtime::v1::PodSandboxState State(const pod::Sandbox& s) {
  return s.state == pod::Sandbox::State::kReady ? runtime::v1::SANDBOX_READY
                                                : runtime::v1::SANDBOX_NOTREADY;
}

std::string VerboseInfo(const pod::Sandbox& s) {
  nlohmann::json spec = nlohmann::json::parse(s.oci_spec, nullptr, false);
  nlohmann::json cni = nlohmann::json::parse(s.cni_result, nullptr, false);
  return nlohmann::json{{"pid", s.pid},
                        {"netns", s.netns_path},
                        {"runtimeHandler", s.runtime_handler},
                        {"hostname", s.spec.hostname},
                        {"runtimeSpec", spec.is_discarded() ? nlohmann::json() : spec},
                        {"cniResult", cni.is_discarded() ? nlohmann::json() : cni}}
      .dump();
}

}  // namespace

grpc::ServerUnaryReactor* RuntimeService::RunPodSandbox(
    grpc::CallbackServerContext* context, const runtime::v1::RunPodSandboxRequest* request,
    runtime::v1::RunPodSandboxResponse* response) {
  return OnPool(context, [this, context, request, response] {
    const runtime::v1::NamespaceOption& ns =
        request->config().linux().security_context().namespace_options();
    if (ns.has_userns_options() && ns.userns_options().mode() != runtime::v1::NODE) {
      // Status advertises no user namespace support, so kubelet does not ask; anyone else gets a
      // clear refusal rather than a pod that silently shares the host's user namespace.
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "linux.security_context.namespace_options.userns_options: user "
                          "namespaces are not supported by berth (mode must be NODE)");
    }
    // Named in the call's log lines until it has an id.
    SetLogPod(absl::StrCat(request->config().metadata().namespace_(), "/",
                           request->config().metadata().name()));
    absl::StatusOr<std::string> id = sandboxes_->Run(ToSpec(*request), CallerOf(context));
    if (!id.ok()) return ToGrpcStatus(id.status());
    SetLogPod(id->substr(0, 13));
    response->set_pod_sandbox_id(*id);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* RuntimeService::StopPodSandbox(
    grpc::CallbackServerContext* context, const runtime::v1::StopPodSandboxRequest* request,
    runtime::v1::StopPodSandboxResponse*) {
  return OnPool(context, [this, request] {
    return ToGrpcStatus(sandboxes_->Stop(request->pod_sandbox_id()));
  });
}

grpc::ServerUnaryReactor* RuntimeService::RemovePodSandbox(
    grpc::CallbackServerContext* context, const runtime::v1::RemovePodSandboxRequest* request,
    runtime::v1::RemovePodSandboxResponse*) {
  return OnPool(context, [this, request] {
    return ToGrpcStatus(sandboxes_->Remove(request->pod_sandbox_id()));
  });
}

void RuntimeService::FillSandboxStatus(const pod::Sandbox& s,
                                       runtime::v1::PodSandboxStatus* status) {
  status->set_id(s.id);
  FillMetadata(s, status->mutable_metadata());
  status->set_state(State(s));
  status->set_created_at(s.created_at_ns);
  for (size_t i = 0; i < s.ips.size(); ++i) {
    if (i == 0) {
      status->mutable_network()->set_ip(s.ips[i].Ip());
    } else {
      status->mutable_network()->add_additional_ips()->set_ip(s.ips[i].Ip());
    }
  }
  runtime::v1::NamespaceOption* ns =
      status->mutable_linux()->mutable_namespaces()->mutable_options();
  ns->set_network(s.spec.host_network ? runtime::v1::NODE : runtime::v1::POD);
  ns->set_ipc(s.spec.host_ipc ? runtime::v1::NODE : runtime::v1::POD);
  ns->set_pid(static_cast<NamespaceMode>(s.spec.pid_mode));
  status->mutable_labels()->insert(s.spec.labels.begin(), s.spec.labels.end());
  status->mutable_annotations()->insert(s.spec.annotations.begin(), s.spec.annotations.end());
  status->set_runtime_handler(s.runtime_handler);
}

grpc::Status RuntimeService::PodSandboxStatus(grpc::ServerContext*,
                                              const runtime::v1::PodSandboxStatusRequest* request,
                                              runtime::v1::PodSandboxStatusResponse* response) {
  absl::StatusOr<pod::SandboxPtr> found = sandboxes_->Get(request->pod_sandbox_id());
  if (!found.ok()) return ToGrpcStatus(found.status());
  const pod::Sandbox& s = **found;
  FillSandboxStatus(s, response->mutable_status());
  response->set_timestamp(absl::ToUnixNanos(absl::Now()));
  if (request->verbose()) (*response->mutable_info())["info"] = VerboseInfo(s);
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListPodSandbox(grpc::ServerContext*,
                                            const runtime::v1::ListPodSandboxRequest* request,
                                            runtime::v1::ListPodSandboxResponse* response) {
  const runtime::v1::PodSandboxFilter& filter = request->filter();
  for (const pod::SandboxPtr& s : sandboxes_->List()) {
    if (!filter.id().empty() && !absl::StartsWith(s->id, filter.id())) continue;
    if (filter.has_state() && filter.state().state() != State(*s)) continue;
    if (!LabelsMatch(s->spec.labels, filter.label_selector())) continue;
    runtime::v1::PodSandbox* item = response->add_items();
    item->set_id(s->id);
    FillMetadata(*s, item->mutable_metadata());
    item->set_state(State(*s));
    item->set_created_at(s->created_at_ns);
    item->mutable_labels()->insert(s->spec.labels.begin(), s->spec.labels.end());
    item->mutable_annotations()->insert(s->spec.annotations.begin(), s->spec.annotations.end());
    item->set_runtime_handler(s->runtime_handler);
  }
  return grpc::Status::OK;
}

}  // namespace berth::cri
