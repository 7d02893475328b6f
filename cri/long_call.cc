#include "cri/long_call.h"

#include "base/logging.h"
#include "cri/grpc_status.h"

namespace berth::cri {

grpc::ServerUnaryReactor* FinishOnPool(WorkPool* pool, grpc::CallbackServerContext* context,
                                       absl::AnyInvocable<grpc::Status() &&> call) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The call's log context goes with it to the pool thread, and leaves this one.
  absl::Status queued = pool->Submit(
      [reactor, call = std::move(call), log = CurrentLogContext()]() mutable {
        ScopedLogContext scoped(std::move(log));
        reactor->Finish(std::move(call)());
      });
  if (!queued.ok()) reactor->Finish(ToGrpcStatus(queued));
  SetLogContext({});
  return reactor;
}

pod::RequestOrigin CallerOf(grpc::CallbackServerContext* context) {
  return {.gone = [context] {
    return context->IsCancelled() || context->deadline() < std::chrono::system_clock::now();
  }};
}

}  // namespace berth::cri
