#include "test/lib/cri_client.h"

namespace berth::testing {

using runtime::v1::ImageService;
using runtime::v1::RuntimeService;

CriClient::CriClient(const std::string& socket_path, std::chrono::milliseconds deadline,
                     Connect connect)
    : deadline_(deadline) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  if (connect == Connect::kFast) {
    // Tests connect while the daemon starts: retry quickly instead of gRPC's 1 s+ backoff.
    // (The minimum backoff is also the time the handshake is given.)
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  } else {
    // Not the fast channels' subchannel, whatever it met: a channel of its own, as a new
    // kubelet's is.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  }
  channel_ = grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(),
                                       args);
  runtime_ = RuntimeService::NewStub(channel_);
  images_ = ImageService::NewStub(channel_);
}

absl::StatusOr<runtime::v1::VersionResponse> CriClient::Version() {
  return Call(&RuntimeService::Stub::Version, runtime::v1::VersionRequest());
}

absl::StatusOr<runtime::v1::StatusResponse> CriClient::Status(bool verbose) {
  runtime::v1::StatusRequest request;
  request.set_verbose(verbose);
  return Call(&RuntimeService::Stub::Status, request);
}

absl::StatusOr<runtime::v1::RuntimeConfigResponse> CriClient::RuntimeConfig() {
  return Call(&RuntimeService::Stub::RuntimeConfig, runtime::v1::RuntimeConfigRequest());
}

absl::StatusOr<std::string> CriClient::PullImage(const std::string& image,
                                                 const runtime::v1::AuthConfig* auth) {
  runtime::v1::PullImageRequest request;
  request.mutable_image()->set_image(image);
  if (auth != nullptr) *request.mutable_auth() = *auth;
  absl::StatusOr<runtime::v1::PullImageResponse> response =
      Call(&ImageService::Stub::PullImage, request);
  if (!response.ok()) return response.status();
  return response->image_ref();
}

absl::StatusOr<runtime::v1::ListImagesResponse> CriClient::ListImages(const std::string& filter) {
  runtime::v1::ListImagesRequest request;
  if (!filter.empty()) request.mutable_filter()->mutable_image()->set_image(filter);
  return Call(&ImageService::Stub::ListImages, request);
}

absl::StatusOr<runtime::v1::ImageStatusResponse> CriClient::ImageStatus(const std::string& image,
                                                                        bool verbose) {
  runtime::v1::ImageStatusRequest request;
  request.mutable_image()->set_image(image);
  request.set_verbose(verbose);
  return Call(&ImageService::Stub::ImageStatus, request);
}

absl::Status CriClient::RemoveImage(const std::string& image) {
  runtime::v1::RemoveImageRequest request;
  request.mutable_image()->set_image(image);
  return Call(&ImageService::Stub::RemoveImage, request).status();
}

absl::StatusOr<runtime::v1::ImageFsInfoResponse> CriClient::ImageFsInfo() {
  return Call(&ImageService::Stub::ImageFsInfo, runtime::v1::ImageFsInfoRequest());
}

absl::Status CriClient::RemoveAllPodSandboxes() {
  absl::StatusOr<runtime::v1::ListPodSandboxResponse> list =
      Call(&RuntimeService::Stub::ListPodSandbox, runtime::v1::ListPodSandboxRequest());
  if (!list.ok()) return list.status();
  absl::Status first;
  for (const auto& item : list->items()) {
    runtime::v1::RemovePodSandboxRequest request;
    request.set_pod_sandbox_id(item.id());
    first.Update(Call(&RuntimeService::Stub::RemovePodSandbox, request).status());
  }
  return first;
}

}  // namespace berth::testing
