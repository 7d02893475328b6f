#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>

#include "absl/status/statusor.h"
#include "api.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace berth::testing {

// A CRI client for tests: RuntimeService and ImageService stubs on one unix-socket channel, every
// call with a deadline, results as absl::StatusOr (same code and message as the gRPC status).
// Thread-safe (gRPC stubs are).
class CriClient {
 public:
  // How the channel connects. kFast retries every 20-200 ms, with a handshake that must finish
  // as quickly, for tests that poll a starting daemon. kLikeKubelet keeps gRPC's defaults, as
  // kubelet does: a server that accepted late still has 20 s to answer the handshake.
  enum class Connect { kFast, kLikeKubelet };
  explicit CriClient(const std::string& socket_path,
                     std::chrono::milliseconds deadline = std::chrono::seconds(30),
                     Connect connect = Connect::kFast);

  // Any RPC of either service: client.Call(&RuntimeService::Stub::ListContainers, request).
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                              Response*),
                                const Request& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline_);
    Response response;
    grpc::Status status = (StubFor<Stub>().*method)(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return response;
  }

  void set_deadline(std::chrono::milliseconds deadline) { deadline_ = deadline; }

  absl::StatusOr<runtime::v1::VersionResponse> Version();
  absl::StatusOr<runtime::v1::StatusResponse> Status(bool verbose = false);
  absl::StatusOr<runtime::v1::RuntimeConfigResponse> RuntimeConfig();
  // Returns the image ref (id).
  absl::StatusOr<std::string> PullImage(const std::string& image,
                                        const runtime::v1::AuthConfig* auth = nullptr);
  absl::StatusOr<runtime::v1::ListImagesResponse> ListImages(const std::string& filter = "");
  absl::StatusOr<runtime::v1::ImageStatusResponse> ImageStatus(const std::string& image,
                                                               bool verbose = false);
  absl::Status RemoveImage(const std::string& image);
  absl::StatusOr<runtime::v1::ImageFsInfoResponse> ImageFsInfo();
  // A fixture's teardown: removes every pod sandbox there is; the first error, if any.
  absl::Status RemoveAllPodSandboxes();

  runtime::v1::RuntimeService::Stub& runtime() { return *runtime_; }
  runtime::v1::ImageService::Stub& images() { return *images_; }

 private:
  template <typename Stub>
  Stub& StubFor() {
    if constexpr (std::is_same_v<Stub, runtime::v1::RuntimeService::Stub>) {
      return *runtime_;
    } else {
      static_assert(std::is_same_v<Stub, runtime::v1::ImageService::Stub>);
      return *images_;
    }
  }

  std::chrono::milliseconds deadline_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<runtime::v1::RuntimeService::Stub> runtime_;
  std::unique_ptr<runtime::v1::ImageService::Stub> images_;
};

}  // namespace berth::testing
