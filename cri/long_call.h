#pragma once

#include "absl/functional/any_invocable.h"
#include "base/work_pool.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"
#include "pod/name_registrar.h"

namespace berth::cri {

// How a long unary CRI call (a stop, remove, create, start, exec or pull) is served without
// holding one of gRPC's request threads while it waits: its callback handler hands `call` to
// `pool` and returns the reactor at once; the pool's worker runs `call` and finishes the reactor
// with the status it returns. `call` may use the context, request and response of the call: they
// live until the reactor is finished. If the pool takes no more work (berthd is shutting down),
// the call is finished at once with that error (UNAVAILABLE).
grpc::ServerUnaryReactor* FinishOnPool(WorkPool* pool, grpc::CallbackServerContext* context,
                                       absl::AnyInvocable<grpc::Status() &&> call);

// The caller of a create, as the managers see it: gone once it cancelled or its deadline passed
// (kubelet's runtime request timeout), so that a create finishing later is kept for its retry.
// The fingerprint is left to the manager (it hashes the request it was given).
pod::RequestOrigin CallerOf(grpc::CallbackServerContext* context);

}  // namespace berth::cri
