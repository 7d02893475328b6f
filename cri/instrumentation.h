#pragma once

#include "grpcpp/support/server_interceptor.h"
#include "cri/metrics.h"

namespace berth::cri {

// The one instrumentation layer every RPC goes through, as a gRPC server interceptor: a log line
// (debug on success, warning with the status on failure), the operation metrics, and a clear
// message for RPCs berth does not implement (gRPC's generated default says nothing).
class InstrumentationFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit InstrumentationFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics* metrics_;  // not owned; outlives the server
};

}  // namespace berth::cri
