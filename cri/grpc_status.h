#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace berth::cri {

// The one place an absl::Status becomes a grpc::Status: same code, same message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace berth::cri
