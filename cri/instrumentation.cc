#include "cri/instrumentation.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "api.pb.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/random_id.h"
#include "spdlog/spdlog.h"

namespace berth::cri {
namespace {

using grpc::experimental::InterceptionHookPoints;

// "/runtime.v1.RuntimeService/Version" -> "Version".
std::string OperationName(const char* method) {
  std::string name = method != nullptr ? method : "";
  size_t slash = name.rfind('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

// What a request names: its pod or its container (as crictl shortens ids), read by method with
// the request's own type. Not by protobuf reflection: building api.proto's descriptors for it
// would cost berthd half a MiB.
struct Named {
  std::string pod, container;
};
template <typename Request>
Named Pod(const void* message) {
  return {static_cast<const Request*>(message)->pod_sandbox_id().substr(0, 13), ""};
}
template <typename Request>
Named Container(const void* message) {
  return {"", static_cast<const Request*>(message)->container_id().substr(0, 13)};
}

Named NamedBy(absl::string_view operation, const void* message) {
  namespace v1 = runtime::v1;
  using Reader = Named (*)(const void*);
  static const auto* const kReaders = new std::map<absl::string_view, Reader>{
      {"StopPodSandbox", &Pod<v1::StopPodSandboxRequest>},
      {"RemovePodSandbox", &Pod<v1::RemovePodSandboxRequest>},
      {"PodSandboxStatus", &Pod<v1::PodSandboxStatusRequest>},
      {"PodSandboxStats", &Pod<v1::PodSandboxStatsRequest>},
      {"PortForward", &Pod<v1::PortForwardRequest>},
      {"CreateContainer", &Pod<v1::CreateContainerRequest>},
      {"StartContainer", &Container<v1::StartContainerRequest>},
      {"StopContainer", &Container<v1::StopContainerRequest>},
      {"RemoveContainer", &Container<v1::RemoveContainerRequest>},
      {"ContainerStatus", &Container<v1::ContainerStatusRequest>},
      {"ContainerStats", &Container<v1::ContainerStatsRequest>},
      {"UpdateContainerResources", &Container<v1::UpdateContainerResourcesRequest>},
      {"ReopenContainerLog", &Container<v1::ReopenContainerLogRequest>},
      {"ExecSync", &Container<v1::ExecSyncRequest>},
      {"Exec", &Container<v1::ExecRequest>},
      {"Attach", &Container<v1::AttachRequest>},
      {"CheckpointContainer", &Container<v1::CheckpointContainerRequest>},
  };
  auto it = kReaders->find(operation);
  return it == kReaders->end() || message == nullptr ? Named{} : it->second(message);
}

// The id in every log line of a call: eight hex digits, counted from a random start, so that ids
// differ across berthd restarts without a getrandom() on every call (kubelet's lists come every
// second).
std::string NextRequestId() {
  static std::atomic<uint32_t> next{[] {
    uint32_t seed = 0;
    const std::string bytes = RandomBytes(sizeof(seed));
    std::memcpy(&seed, bytes.data(), sizeof(seed));
    return seed;
  }()};
  return absl::StrFormat("%08x", next.fetch_add(1, std::memory_order_relaxed));
}

class Instrumentation final : public grpc::experimental::Interceptor {
 public:
  Instrumentation(grpc::experimental::ServerRpcInfo* info, Metrics* metrics)
      : method_(info->method() != nullptr ? info->method() : ""),
        operation_(OperationName(info->method())),
        metrics_(metrics),
        start_(std::chrono::steady_clock::now()),
        request_id_(NextRequestId()) {
    metrics_->InFlight(operation_, +1);
  }
  // Also for a call that ends without a status sent (its client went away first).
  ~Instrumentation() override { metrics_->InFlight(operation_, -1); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // The handler runs next, on this thread: its log lines carry the call's request id (and the
    // pod and container once it knows them; a long call carries them to its pool thread).
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      Named named = NamedBy(operation_, methods->GetRecvMessage());
      SetLogContext({.request = request_id_,
                     .pod = std::move(named.pod),
                     .container = std::move(named.container)});
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(methods);
      if (CurrentLogContext().request == request_id_) SetLogContext({});
    }
    methods->Proceed();
  }

 private:
  void Finish(grpc::experimental::InterceptorBatchMethods* methods) {
    grpc::Status status = methods->GetSendStatus();
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED && status.error_message().empty()) {
      status = grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            absl::StrCat(method_, " is not implemented by berth"));
      methods->ModifySendStatus(status);
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string code =
        absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
    metrics_->RecordOperation(operation_, code, seconds);
    // Said with the call's request id even where the status is sent from another thread.
    const bool ours = CurrentLogContext().request == request_id_;
    std::optional<ScopedLogContext> context;
    if (!ours) context.emplace(LogContext{.request = request_id_});
    if (status.ok()) {
      spdlog::debug("{} OK in {:.3f} ms", operation_, seconds * 1e3);
    } else {
      spdlog::warn("{} failed in {:.3f} ms: {}: {}", operation_, seconds * 1e3, code,
                   status.error_message());
    }
  }

  std::string method_;
  std::string operation_;
  Metrics* metrics_;
  std::chrono::steady_clock::time_point start_;
  std::string request_id_;  // in every log line of the call: "request=<8 hex digits>"
};

}  // namespace

grpc::experimental::Interceptor* InstrumentationFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new Instrumentation(info, metrics_);
}

}  // namespace berth::cri
