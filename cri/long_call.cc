#include "cri/long_call.h"

#include "cri/grpc_status.h"

namespace berth::cri {

grpc::ServerUnaryReactor* FinishOnPool(WorkPool* pool, grpc::CallbackServerContext* context,
                                       absl::AnyInvocable<grpc::Status() &&> call) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status queued = pool->Submit(
      [reactor, call = std::move(call)]() mutable { reactor->Finish(std::move(call)()); });
  if (!queued.ok()) reactor->Finish(ToGrpcStatus(queued));
  return reactor;
}

pod::RequestOrigin CallerOf(grpc::CallbackServerContext* context) {
  return {.gone = [context] {
    return context->IsCancelled() || context->deadline() < std::chrono::system_clock::now();
  }};
}

}  // namespace berth::cri
