#pragma once

#include "api.grpc.pb.h"
#include "cri/long_call.h"
#include "cri/metrics.h"
#include "image/puller.h"
#include "image/store.h"

namespace berth::cri {

// runtime.v1.ImageService: ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo over the
// image store and puller. Thin handlers. Thread-safe: the lists and statuses (from memory) run on
// gRPC's pool of synchronous threads; PullImage and RemoveImage (network, disk) are callback
// methods finished on `pool`.
class ImageService final : public runtime::v1::ImageService::WithCallbackMethod_PullImage<
                               runtime::v1::ImageService::WithCallbackMethod_RemoveImage<
                                   runtime::v1::ImageService::Service>> {
 public:
  ImageService(image::ImageStore* store, image::ImagePuller* puller, Metrics* metrics,
               WorkPool* pool)
      : store_(store), puller_(puller), metrics_(metrics), pool_(pool) {}

  grpc::Status ListImages(grpc::ServerContext* context,
                          const runtime::v1::ListImagesRequest* request,
                          runtime::v1::ListImagesResponse* response) override;
  grpc::Status ImageStatus(grpc::ServerContext* context,
                           const runtime::v1::ImageStatusRequest* request,
                           runtime::v1::ImageStatusResponse* response) override;
  grpc::ServerUnaryReactor* PullImage(grpc::CallbackServerContext* context,
                                      const runtime::v1::PullImageRequest* request,
                                      runtime::v1::PullImageResponse* response) override;
  grpc::ServerUnaryReactor* RemoveImage(grpc::CallbackServerContext* context,
                                        const runtime::v1::RemoveImageRequest* request,
                                        runtime::v1::RemoveImageResponse* response) override;
  grpc::Status ImageFsInfo(grpc::ServerContext* context,
                           const runtime::v1::ImageFsInfoRequest* request,
                           runtime::v1::ImageFsInfoResponse* response) override;

 private:
  image::ImageStore* store_;    // not owned
  image::ImagePuller* puller_;  // not owned
  Metrics* metrics_;            // not owned
  WorkPool* pool_;              // not owned
};

}  // namespace berth::cri
