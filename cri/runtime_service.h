#pragma once

#include "api.grpc.pb.h"
#include "config/store.h"

namespace berth::cri {

// runtime.v1.RuntimeService. Handlers are thin: validate, make one call, build the reply. Each CRI
// area has its own handler file (status_handlers.cc, ...). An RPC not overridden here answers
// UNIMPLEMENTED (the instrumentation names it). Thread-safe: handlers run on gRPC's thread pool.
class RuntimeService final : public runtime::v1::RuntimeService::Service {
 public:
  explicit RuntimeService(const config::ConfigStore* config) : config_(config) {}

  grpc::Status Version(grpc::ServerContext* context, const runtime::v1::VersionRequest* request,
                       runtime::v1::VersionResponse* response) override;
  grpc::Status Status(grpc::ServerContext* context, const runtime::v1::StatusRequest* request,
                      runtime::v1::StatusResponse* response) override;
  grpc::Status RuntimeConfig(grpc::ServerContext* context,
                             const runtime::v1::RuntimeConfigRequest* request,
                             runtime::v1::RuntimeConfigResponse* response) override;

 private:
  const config::ConfigStore* config_;  // not owned
};

}  // namespace berth::cri
