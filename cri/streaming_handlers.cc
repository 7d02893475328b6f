// Exec, Attach, PortForward: validate, and return a one-time URL on the streaming server.

#include "absl/strings/str_cat.h"
#include "cri/grpc_status.h"
#include "cri/runtime_service.h"

namespace berth::cri {

grpc::Status RuntimeService::Exec(grpc::ServerContext*, const runtime::v1::ExecRequest* request,
                                  runtime::v1::ExecResponse* response) {
  if (request->cmd().empty()) return ToGrpcStatus(absl::InvalidArgumentError("cmd is empty"));
  if (!request->stdin() && !request->stdout() && !request->stderr()) {
    return ToGrpcStatus(absl::InvalidArgumentError("one of stdin, stdout and stderr must be set"));
  }
  if (request->tty() && request->stderr()) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("tty and stderr cannot both be set: a tty has one output"));
  }
  absl::StatusOr<pod::ContainerPtr> c = containers_->Get(request->container_id());
  if (!c.ok()) return ToGrpcStatus(c.status());
  if ((*c)->state != pod::Container::State::kRunning) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("container ", (*c)->id, " is not running")));
  }
  streaming::Request r{.kind = streaming::Request::Kind::kExec,
                       .id = (*c)->id,
                       .cmd = {request->cmd().begin(), request->cmd().end()},
                       .tty = request->tty(),
                       .stdin = request->stdin(),
                       .stdout = request->stdout(),
                       .stderr = request->stderr()};
  response->set_url(streaming_->Register(std::move(r)));
  return grpc::Status::OK;
}

grpc::Status RuntimeService::Attach(grpc::ServerContext*, const runtime::v1::AttachRequest* request,
                                    runtime::v1::AttachResponse* response) {
  if (!request->stdin() && !request->stdout() && !request->stderr()) {
    return ToGrpcStatus(absl::InvalidArgumentError("one of stdin, stdout and stderr must be set"));
  }
  absl::StatusOr<pod::ContainerPtr> c = containers_->Get(request->container_id());
  if (!c.ok()) return ToGrpcStatus(c.status());
  if ((*c)->state != pod::Container::State::kRunning) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("container ", (*c)->id, " is not running")));
  }
  if (request->stdin() && !(*c)->spec.stdin) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("container ", (*c)->id, " was not created with stdin")));
  }
  streaming::Request r{.kind = streaming::Request::Kind::kAttach,
                       .id = (*c)->id,
                       .tty = (*c)->spec.tty,
                       .stdin = request->stdin(),
                       .stdout = request->stdout(),
                       .stderr = request->stderr() && !(*c)->spec.tty};
  response->set_url(streaming_->Register(std::move(r)));
  return grpc::Status::OK;
}

grpc::Status RuntimeService::PortForward(grpc::ServerContext*,
                                         const runtime::v1::PortForwardRequest* request,
                                         runtime::v1::PortForwardResponse* response) {
  absl::StatusOr<pod::SandboxPtr> s = sandboxes_->Get(request->pod_sandbox_id());
  if (!s.ok()) return ToGrpcStatus(s.status());
  if ((*s)->state != pod::Sandbox::State::kReady) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("pod sandbox ", (*s)->id, " is not ready")));
  }
  for (int32_t port : request->port()) {
    if (port <= 0 || port > 65535) {
      return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat("port ", port, " is not valid")));
    }
  }
  streaming::Request r{.kind = streaming::Request::Kind::kPortForward,
                       .id = (*s)->id,
                       .ports = {request->port().begin(), request->port().end()}};
  response->set_url(streaming_->Register(std::move(r)));
  return grpc::Status::OK;
}

}  // namespace berth::cri
