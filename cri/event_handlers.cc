// GetContainerEvents: a stream of container (and sandbox) lifecycle events for kubelet's evented
// PLEG, each with the current status of the pod and its containers.

#include "cri/runtime_service.h"

namespace berth::cri {

grpc::ServerWriteReactor<runtime::v1::ContainerEventResponse>* RuntimeService::GetContainerEvents(
    grpc::CallbackServerContext*, const runtime::v1::GetEventsRequest*) {
  return event_streams_.Open();
}

EventStreams::ResponsePtr RuntimeService::EventResponse(const pod::ContainerEvent& event) {
  auto response = std::make_shared<runtime::v1::ContainerEventResponse>();
  response->set_container_id(event.id);
  response->set_container_event_type(
      static_cast<runtime::v1::ContainerEventType>(static_cast<int>(event.type)));
  response->set_created_at(event.created_at_ns);
  if (absl::StatusOr<pod::SandboxPtr> s = sandboxes_->Get(event.sandbox_id); s.ok()) {
    FillSandboxStatus(**s, response->mutable_pod_sandbox_status());
    for (const pod::ContainerPtr& c : containers_->List()) {
      if (c->sandbox_id == event.sandbox_id) {
        FillContainerStatus(*c, response->add_containers_statuses());
      }
    }
  }
  return response;
}

}  // namespace berth::cri
