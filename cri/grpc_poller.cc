#include "cri/grpc_poller.h"

namespace berth::cri {

GrpcPoller::GrpcPoller(grpc::ServerBuilder* builder)
    : cq_(builder->AddCompletionQueue(/*is_frequently_polled=*/true)) {}

GrpcPoller::~GrpcPoller() { Stop(); }

void GrpcPoller::Start() {
  thread_ = std::thread([cq = cq_.get()] {
    void* tag = nullptr;
    bool ok = false;
    // Nothing is ever queued here: Next returns only once the queue is shut down.
    while (cq->Next(&tag, &ok)) {
    }
  });
}

void GrpcPoller::Stop() {
  if (stopped_) return;
  stopped_ = true;
  cq_->Shutdown();
  if (thread_.joinable()) thread_.join();
}

}  // namespace berth::cri
