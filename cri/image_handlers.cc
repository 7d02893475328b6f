// ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo.

#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cri/grpc_status.h"
#include "cri/image_service.h"
#include "image/registry.h"
#include "nlohmann/json.hpp"

namespace berth::cri {
namespace {

void ToProto(const image::ImageRecord& image, runtime::v1::Image* out) {
  out->set_id(image.id);
  for (const std::string& tag : image.repo_tags) out->add_repo_tags(tag);
  for (const std::string& digest : image.repo_digests) out->add_repo_digests(digest);
  out->set_size(static_cast<uint64_t>(image.size));
  // The image's USER is "uid", "name", "uid:gid" or "name:group": kubelet wants the uid when it
  // is numeric (to check runAsNonRoot) and the name otherwise.
  const std::string user = image.config.user.substr(0, image.config.user.find(':'));
  int64_t uid = 0;
  if (!user.empty() && absl::SimpleAtoi(user, &uid)) {
    out->mutable_uid()->set_value(uid);
  } else {
    out->set_username(user);
  }
  out->mutable_spec()->set_image(image.id);
  out->set_pinned(image.pinned);
}

std::string VerboseInfo(const image::ImageRecord& image) {
  nlohmann::json spec = nlohmann::json::parse(image.config_json, nullptr, false);
  return nlohmann::json{{"id", image.id},
                        {"manifestDigest", image.manifest_digest},
                        {"chainIDs", image.chain_ids},
                        {"pinned", image.pinned},
                        {"pulledAt", absl::FormatTime(absl::FromUnixNanos(image.pulled_at_ns))},
                        {"imageSpec", spec.is_discarded() ? nlohmann::json() : spec}}
      .dump();
}

absl::StatusOr<std::optional<image::Credentials>> RequestCredentials(
    const runtime::v1::PullImageRequest& request) {
  if (!request.has_auth()) return std::nullopt;
  const runtime::v1::AuthConfig& auth = request.auth();
  if (auth.username().empty() && auth.password().empty() && auth.auth().empty() &&
      auth.identity_token().empty() && auth.registry_token().empty()) {
    return std::nullopt;
  }
  absl::StatusOr<image::Credentials> creds = image::CredentialsFromAuthConfig(
      auth.username(), auth.password(), auth.auth(), auth.identity_token(),
      auth.registry_token());
  if (!creds.ok()) return creds.status();
  return std::optional<image::Credentials>(*std::move(creds));
}

}  // namespace

grpc::Status ImageService::ListImages(grpc::ServerContext*,
                                      const runtime::v1::ListImagesRequest* request,
                                      runtime::v1::ListImagesResponse* response) {
  const std::string& filter = request->filter().image().image();
  if (!filter.empty()) {
    absl::StatusOr<image::ImagePtr> image = store_->Resolve(filter);
    if (image.ok()) ToProto(**image, response->add_images());
    return grpc::Status::OK;
  }
  for (const image::ImagePtr& image : store_->List()) ToProto(*image, response->add_images());
  return grpc::Status::OK;
}

grpc::Status ImageService::ImageStatus(grpc::ServerContext*,
                                       const runtime::v1::ImageStatusRequest* request,
                                       runtime::v1::ImageStatusResponse* response) {
  const std::string& name = request->image().image();
  if (name.empty()) return ToGrpcStatus(absl::InvalidArgumentError("image.image is empty"));
  absl::StatusOr<image::ImagePtr> image = store_->Resolve(name);
  // An unknown image is not an error: the reply simply has no image (kubelet then pulls).
  if (absl::IsNotFound(image.status())) return grpc::Status::OK;
  if (!image.ok()) return ToGrpcStatus(image.status());
  ToProto(**image, response->mutable_image());
  if (request->verbose()) (*response->mutable_info())["info"] = VerboseInfo(**image);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ImageService::PullImage(grpc::CallbackServerContext* context,
                                                  const runtime::v1::PullImageRequest* request,
                                                  runtime::v1::PullImageResponse* response) {
  return FinishOnPool(pool_, context, [this, context, request, response] {
    const std::string& name = request->image().image();
    if (name.empty()) return ToGrpcStatus(absl::InvalidArgumentError("image.image is empty"));
    absl::StatusOr<std::optional<image::Credentials>> creds = RequestCredentials(*request);
    if (!creds.ok()) return ToGrpcStatus(creds.status());
    const absl::Time start = absl::Now();
    // kubelet gives up on a pull after its runtime request timeout: the pull stops with it.
    absl::StatusOr<image::PullResult> result =
        puller_->Pull(name, *creds, [context] { return context->IsCancelled(); });
    metrics_->RecordPull(result.ok(), result.ok() ? result->bytes_downloaded : 0,
                         absl::ToDoubleSeconds(absl::Now() - start));
    if (!result.ok()) return ToGrpcStatus(result.status());
    response->set_image_ref(result->image->id);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* ImageService::RemoveImage(grpc::CallbackServerContext* context,
                                                    const runtime::v1::RemoveImageRequest* request,
                                                    runtime::v1::RemoveImageResponse*) {
  return FinishOnPool(pool_, context, [this, request] {
    const std::string& name = request->image().image();
    if (name.empty()) return ToGrpcStatus(absl::InvalidArgumentError("image.image is empty"));
    return ToGrpcStatus(store_->RemoveByName(name));
  });
}

grpc::Status ImageService::ImageFsInfo(grpc::ServerContext*, const runtime::v1::ImageFsInfoRequest*,
                                       runtime::v1::ImageFsInfoResponse* response) {
  const image::FsUsage usage = store_->Usage();
  runtime::v1::FilesystemUsage* fs = response->add_image_filesystems();
  fs->set_timestamp(absl::ToUnixNanos(absl::Now()));
  fs->mutable_fs_id()->set_mountpoint(store_->LayersDir());
  fs->mutable_used_bytes()->set_value(static_cast<uint64_t>(usage.bytes));
  fs->mutable_inodes_used()->set_value(static_cast<uint64_t>(usage.inodes));
  return grpc::Status::OK;
}

}  // namespace berth::cri
