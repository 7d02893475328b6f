#include "cri/instrumentation.h"

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
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

class Instrumentation final : public grpc::experimental::Interceptor {
 public:
  Instrumentation(grpc::experimental::ServerRpcInfo* info, Metrics* metrics)
      : method_(info->method() != nullptr ? info->method() : ""),
        operation_(OperationName(info->method())),
        metrics_(metrics),
        start_(std::chrono::steady_clock::now()) {
    metrics_->InFlight(operation_, +1);
  }
  // Also for a call that ends without a status sent (its client went away first).
  ~Instrumentation() override { metrics_->InFlight(operation_, -1); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(methods);
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
};

}  // namespace

grpc::experimental::Interceptor* InstrumentationFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new Instrumentation(info, metrics_);
}

}  // namespace berth::cri
