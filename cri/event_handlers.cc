// GetContainerEvents: a stream of container (and sandbox) lifecycle events for kubelet's evented
// PLEG, each with the current status of the pod and its containers.

#include "cri/runtime_service.h"

namespace berth::cri {

grpc::Status RuntimeService::GetContainerEvents(
    grpc::ServerContext* context, const runtime::v1::GetEventsRequest*,
    grpc::ServerWriter<runtime::v1::ContainerEventResponse>* writer) {
  std::shared_ptr<pod::EventBus::Subscription> subscription = events_->Subscribe();
  while (!context->IsCancelled()) {
    pod::ContainerEvent event;
    if (!subscription->Next(&event, absl::Seconds(1))) continue;
    runtime::v1::ContainerEventResponse response;
    response.set_container_id(event.id);
    response.set_container_event_type(
        static_cast<runtime::v1::ContainerEventType>(static_cast<int>(event.type)));
    response.set_created_at(event.created_at_ns);
    if (absl::StatusOr<pod::SandboxPtr> s = sandboxes_->Get(event.sandbox_id); s.ok()) {
      FillSandboxStatus(**s, response.mutable_pod_sandbox_status());
      for (const pod::ContainerPtr& c : containers_->List()) {
        if (c->sandbox_id == event.sandbox_id) FillContainerStatus(*c, response.add_containers_statuses());
      }
    }
    if (!writer->Write(response)) break;
  }
  return grpc::Status::OK;
}

}  // namespace berth::cri
