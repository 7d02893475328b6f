// CreateContainer, StartContainer, StopContainer, RemoveContainer, ContainerStatus,
// ListContainers, UpdateContainerResources, ReopenContainerLog, ExecSync.

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cri/grpc_status.h"
#include "cri/helpers.h"
#include "cri/resources.h"
#include "cri/runtime_service.h"

#include "base/logging.h"
#include "nlohmann/json.hpp"

namespace berth::cri {
namespace {

// The CRI SecurityProfile (or the deprecated path string) as the spec's "" / runtime/default /
// localhost.
void SetProfile(const runtime::v1::SecurityProfile* profile, const std::string& legacy,
                std::string* type, std::string* localhost) {
  if (profile != nullptr) {
    switch (profile->profile_type()) {
      case runtime::v1::SecurityProfile::RuntimeDefault: *type = "runtime/default"; return;
      case runtime::v1::SecurityProfile::Localhost:
        *type = "localhost";
        *localhost = profile->localhost_ref();
        return;
      default: *type = "unconfined"; return;
    }
  }
  if (legacy == "runtime/default" || legacy == "docker/default") {
    *type = "runtime/default";
  } else if (absl::StartsWith(legacy, "localhost/")) {
    *type = "localhost";
    *localhost = legacy.substr(sizeof "localhost" - 1);
  } else {
    *type = legacy.empty() ? "" : "unconfined";
  }
}

pod::ContainerSpec ToSpec(const runtime::v1::ContainerConfig& c) {
  pod::ContainerSpec spec;
  spec.name = c.metadata().name();
  spec.attempt = c.metadata().attempt();
  spec.image = c.image().image();
  spec.command = {c.command().begin(), c.command().end()};
  spec.args = {c.args().begin(), c.args().end()};
  spec.working_dir = c.working_dir();
  for (const runtime::v1::KeyValue& kv : c.envs()) spec.envs.emplace_back(kv.key(), kv.value());
  for (const runtime::v1::Mount& m : c.mounts()) {
    spec.mounts.push_back({.container_path = m.container_path(),
                           .host_path = m.host_path(),
                           .readonly = m.readonly(),
                           .recursive_readonly = m.recursive_read_only(),
                           .propagation = static_cast<pod::Propagation>(m.propagation())});
  }
  for (const runtime::v1::Device& d : c.devices()) {
    spec.devices.push_back({d.container_path(), d.host_path(), d.permissions()});
  }
  spec.labels = {c.labels().begin(), c.labels().end()};
  spec.annotations = {c.annotations().begin(), c.annotations().end()};
  spec.log_path = c.log_path();
  spec.stdin = c.stdin();
  spec.stdin_once = c.stdin_once();
  spec.tty = c.tty();
  spec.resources = ToResources(c.linux().resources());
  const runtime::v1::LinuxContainerSecurityContext& sc = c.linux().security_context();
  pod::SecuritySpec& sec = spec.security;
  sec.add_capabilities = {sc.capabilities().add_capabilities().begin(),
                          sc.capabilities().add_capabilities().end()};
  sec.drop_capabilities = {sc.capabilities().drop_capabilities().begin(),
                           sc.capabilities().drop_capabilities().end()};
  sec.add_ambient_capabilities = {sc.capabilities().add_ambient_capabilities().begin(),
                                  sc.capabilities().add_ambient_capabilities().end()};
  sec.privileged = sc.privileged();
  sec.readonly_rootfs = sc.readonly_rootfs();
  sec.no_new_privs = sc.no_new_privs();
  if (sc.has_run_as_user()) sec.run_as_user = sc.run_as_user().value();
  sec.run_as_username = sc.run_as_username();
  if (sc.has_run_as_group()) sec.run_as_group = sc.run_as_group().value();
  sec.supplemental_groups = {sc.supplemental_groups().begin(), sc.supplemental_groups().end()};
  sec.strict_supplemental_groups =
      sc.supplemental_groups_policy() == runtime::v1::SupplementalGroupsPolicy::Strict;
  // Older kubelets still send the deprecated path strings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  SetProfile(sc.has_seccomp() ? &sc.seccomp() : nullptr, sc.seccomp_profile_path(), &sec.seccomp,
             &sec.seccomp_localhost);
  SetProfile(sc.has_apparmor() ? &sc.apparmor() : nullptr, sc.apparmor_profile(), &sec.apparmor,
             &sec.apparmor_localhost);
#pragma GCC diagnostic pop
  if (sc.masked_paths_size() > 0) sec.masked_paths.emplace(sc.masked_paths().begin(), sc.masked_paths().end());
  if (sc.readonly_paths_size() > 0) {
    sec.readonly_paths.emplace(sc.readonly_paths().begin(), sc.readonly_paths().end());
  }
  sec.pid_mode = static_cast<pod::NamespaceMode>(sc.namespace_options().pid());
  sec.target_id = sc.namespace_options().target_id();
  return spec;
}

runtime::v1::ContainerState State(const pod::Container& c) {
  switch (c.state) {
    case pod::Container::State::kCreated: return runtime::v1::CONTAINER_CREATED;
    case pod::Container::State::kRunning: return runtime::v1::CONTAINER_RUNNING;
    case pod::Container::State::kExited: return runtime::v1::CONTAINER_EXITED;
    default: return runtime::v1::CONTAINER_UNKNOWN;
  }
}

void FillMetadata(const pod::Container& c, runtime::v1::ContainerMetadata* m) {
  m->set_name(c.spec.name);
  m->set_attempt(c.spec.attempt);
}

}  // namespace

void RuntimeService::FillContainerStatus(const pod::Container& c,
                                         runtime::v1::ContainerStatus* status) {
  status->set_id(c.id);
  FillMetadata(c, status->mutable_metadata());
  status->set_state(State(c));
  status->set_created_at(c.created_at_ns);
  status->set_started_at(c.started_at_ns);
  status->set_finished_at(c.finished_at_ns);
  status->set_exit_code(c.exit_code);
  status->mutable_image()->set_image(c.image_name);
  status->mutable_image()->set_user_specified_image(c.spec.image);
  status->set_image_ref(c.image_ref);
  status->set_image_id(c.image_id);
  status->set_reason(c.reason);
  status->set_message(c.message);
  status->mutable_labels()->insert(c.spec.labels.begin(), c.spec.labels.end());
  status->mutable_annotations()->insert(c.spec.annotations.begin(), c.spec.annotations.end());
  for (const pod::MountSpec& m : c.spec.mounts) {
    runtime::v1::Mount* out = status->add_mounts();
    out->set_container_path(m.container_path);
    out->set_host_path(m.host_path);
    out->set_readonly(m.readonly);
    out->set_recursive_read_only(m.recursive_readonly);
    out->set_propagation(static_cast<runtime::v1::MountPropagation>(m.propagation));
  }
  status->set_log_path(c.log_path);
  FromResources(c.spec.resources, status->mutable_resources()->mutable_linux());
  runtime::v1::LinuxContainerUser* user = status->mutable_user()->mutable_linux();
  user->set_uid(c.uid);
  user->set_gid(c.gid);
  for (int64_t g : c.supplemental_groups) user->add_supplemental_groups(g);
}

grpc::ServerUnaryReactor* RuntimeService::CreateContainer(
    grpc::CallbackServerContext* context, const runtime::v1::CreateContainerRequest* request,
    runtime::v1::CreateContainerResponse* response) {
  return OnPool(context, [this, context, request, response] {
    if (request->pod_sandbox_id().empty()) {
      return ToGrpcStatus(absl::InvalidArgumentError("pod_sandbox_id is empty"));
    }
    SetLogContainer(request->config().metadata().name());  // until it has an id
    absl::StatusOr<std::string> id =
        containers_->Create(request->pod_sandbox_id(), ToSpec(request->config()),
                            CallerOf(context));
    if (!id.ok()) return ToGrpcStatus(id.status());
    SetLogContainer(id->substr(0, 13));
    response->set_container_id(*id);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* RuntimeService::StartContainer(
    grpc::CallbackServerContext* context, const runtime::v1::StartContainerRequest* request,
    runtime::v1::StartContainerResponse*) {
  return OnPool(context, [this, request] {
    return ToGrpcStatus(containers_->Start(request->container_id()));
  });
}

grpc::ServerUnaryReactor* RuntimeService::StopContainer(
    grpc::CallbackServerContext* context, const runtime::v1::StopContainerRequest* request,
    runtime::v1::StopContainerResponse*) {
  return OnPool(context, [this, request] {
    return ToGrpcStatus(containers_->Stop(
        request->container_id(), std::chrono::seconds(std::max<int64_t>(0, request->timeout()))));
  });
}

grpc::ServerUnaryReactor* RuntimeService::RemoveContainer(
    grpc::CallbackServerContext* context, const runtime::v1::RemoveContainerRequest* request,
    runtime::v1::RemoveContainerResponse*) {
  return OnPool(context, [this, request] {
    return ToGrpcStatus(containers_->Remove(request->container_id()));
  });
}

grpc::Status RuntimeService::ContainerStatus(grpc::ServerContext*,
                                             const runtime::v1::ContainerStatusRequest* request,
                                             runtime::v1::ContainerStatusResponse* response) {
  absl::StatusOr<pod::ContainerPtr> c = containers_->Get(request->container_id());
  if (!c.ok()) return ToGrpcStatus(c.status());
  FillContainerStatus(**c, response->mutable_status());
  if (request->verbose()) {
    absl::StatusOr<std::string> text = containers_->OciSpec(**c);
    nlohmann::json spec = text.ok() ? nlohmann::json::parse(*text, nullptr, false)
                                    : nlohmann::json(nlohmann::json::value_t::discarded);
    (*response->mutable_info())["info"] =
        nlohmann::json{{"sandboxID", (*c)->sandbox_id},
                       {"pid", (*c)->pid},
                       {"monitorPid", (*c)->monitor_pid},
                       {"runtimeHandler", (*c)->runtime_handler},
                       {"bundle", containers_->ContainerDir((*c)->id)},
                       {"privileged", (*c)->spec.security.privileged},
                       {"runtimeSpec", spec.is_discarded() ? nlohmann::json() : spec}}
            .dump();
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeService::ListContainers(grpc::ServerContext*,
                                            const runtime::v1::ListContainersRequest* request,
                                            runtime::v1::ListContainersResponse* response) {
  const runtime::v1::ContainerFilter& filter = request->filter();
  for (const pod::ContainerPtr& c : containers_->List()) {
    if (!filter.id().empty() && !absl::StartsWith(c->id, filter.id())) continue;
    if (!filter.pod_sandbox_id().empty() &&
        !absl::StartsWith(c->sandbox_id, filter.pod_sandbox_id())) {
      continue;
    }
    if (filter.has_state() && filter.state().state() != State(*c)) continue;
    if (!LabelsMatch(c->spec.labels, filter.label_selector())) continue;
    runtime::v1::Container* item = response->add_containers();
    item->set_id(c->id);
    item->set_pod_sandbox_id(c->sandbox_id);
    FillMetadata(*c, item->mutable_metadata());
    item->mutable_image()->set_image(c->image_name);
    item->mutable_image()->set_user_specified_image(c->spec.image);
    // The image id, as containerd gives it here (ContainerStatus gives the repo digest): kubelet's
    // image garbage collection counts an image as in use when a listed container's image_ref
    // equals its ListImages id, and removes the others.
    item->set_image_ref(c->image_id);
    item->set_image_id(c->image_id);
    item->set_state(State(*c));
    item->set_created_at(c->created_at_ns);
    item->mutable_labels()->insert(c->spec.labels.begin(), c->spec.labels.end());
    item->mutable_annotations()->insert(c->spec.annotations.begin(), c->spec.annotations.end());
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* RuntimeService::UpdateContainerResources(
    grpc::CallbackServerContext* context,
    const runtime::v1::UpdateContainerResourcesRequest* request,
    runtime::v1::UpdateContainerResourcesResponse*) {
  return OnPool(context, [this, request] {
    return ToGrpcStatus(
        containers_->UpdateResources(request->container_id(), ToResources(request->linux())));
  });
}

grpc::ServerUnaryReactor* RuntimeService::ReopenContainerLog(
    grpc::CallbackServerContext* context, const runtime::v1::ReopenContainerLogRequest* request,
    runtime::v1::ReopenContainerLogResponse*) {
  return OnPool(context, [this, request] {
    return ToGrpcStatus(containers_->ReopenLog(request->container_id()));
  });
}

grpc::ServerUnaryReactor* RuntimeService::ExecSync(grpc::CallbackServerContext* context,
                                                   const runtime::v1::ExecSyncRequest* request,
                                                   runtime::v1::ExecSyncResponse* response) {
  return OnPool(context, [this, request, response] {
    if (request->cmd().empty()) return ToGrpcStatus(absl::InvalidArgumentError("cmd is empty"));
    absl::StatusOr<pod::ExecResult> r = containers_->ExecSync(
        request->container_id(), {request->cmd().begin(), request->cmd().end()},
        std::chrono::seconds(std::max<int64_t>(0, request->timeout())));
    if (!r.ok()) return ToGrpcStatus(r.status());
    response->set_exit_code(r->exit_code);
    response->set_stdout(std::move(r->stdout_data));
    response->set_stderr(std::move(r->stderr_data));
    return grpc::Status::OK;
  });
}

}  // namespace berth::cri
