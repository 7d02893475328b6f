#pragma once

#include "absl/synchronization/mutex.h"
#include "api.grpc.pb.h"
#include "config/store.h"
#include "cri/event_streams.h"
#include "cri/long_call.h"
#include "cri/streaming/server.h"
#include "image/usage_cache.h"
#include "pod/cgroup_stats.h"
#include "pod/container_manager.h"
#include "pod/sandbox_manager.h"

namespace berth::cri {

namespace internal {
using Runtime = runtime::v1::RuntimeService;
// The calls that can wait (on runc, the monitor, CNI, a container's grace period, a process) are
// callback methods, finished on the WorkPool; GetContainerEvents is a callback stream. The rest
// answer from memory (or a few small files) and stay on gRPC's bounded pool of synchronous
// threads: so kubelet's once-a-second lists and statuses always find a free one.
using RuntimeServiceBase = Runtime::WithCallbackMethod_RunPodSandbox<
    Runtime::WithCallbackMethod_StopPodSandbox<Runtime::WithCallbackMethod_RemovePodSandbox<
        Runtime::WithCallbackMethod_CreateContainer<Runtime::WithCallbackMethod_StartContainer<
            Runtime::WithCallbackMethod_StopContainer<Runtime::WithCallbackMethod_RemoveContainer<
                Runtime::WithCallbackMethod_UpdateContainerResources<
                    Runtime::WithCallbackMethod_ReopenContainerLog<
                        Runtime::WithCallbackMethod_ExecSync<
                            Runtime::WithCallbackMethod_GetContainerEvents<
                                Runtime::Service>>>>>>>>>>>;
}  // namespace internal

// runtime.v1.RuntimeService. Handlers are thin: validate, make one call, build the reply. Each CRI
// area has its own handler file (status_handlers.cc, ...). An RPC not overridden here answers
// UNIMPLEMENTED (the instrumentation names it). Thread-safe: synchronous handlers run on gRPC's
// thread pool, long ones on `pool`. Destroy it only once the gRPC server has shut down.
class RuntimeService final : public internal::RuntimeServiceBase {
 public:
  RuntimeService(const config::ConfigStore* config, pod::SandboxManager* sandboxes,
                 pod::ContainerManager* containers, pod::EventBus* events,
                 streaming::Server* streaming, WorkPool* pool)
      : config_(config),
        sandboxes_(sandboxes),
        containers_(containers),
        streaming_(streaming),
        pool_(pool),
        event_streams_(events, [this](const pod::ContainerEvent& e) { return EventResponse(e); }) {}

  // Ends every GetContainerEvents stream: call it before the server shuts down.
  void EndEventStreams() { event_streams_.End(); }

  grpc::Status Version(grpc::ServerContext* context, const runtime::v1::VersionRequest* request,
                       runtime::v1::VersionResponse* response) override;
  grpc::Status Status(grpc::ServerContext* context, const runtime::v1::StatusRequest* request,
                      runtime::v1::StatusResponse* response) override;
  grpc::Status RuntimeConfig(grpc::ServerContext* context,
                             const runtime::v1::RuntimeConfigRequest* request,
                             runtime::v1::RuntimeConfigResponse* response) override;
  // kubelet's pod CIDR (its podCIDR setting, or the Node's): noted and shown in the verbose
  // status, as cri-o does; pod addresses come from the CNI configuration's IPAM.
  grpc::Status UpdateRuntimeConfig(grpc::ServerContext* context,
                                   const runtime::v1::UpdateRuntimeConfigRequest* request,
                                   runtime::v1::UpdateRuntimeConfigResponse* response) override;

  // sandbox_handlers.cc
  grpc::ServerUnaryReactor* RunPodSandbox(grpc::CallbackServerContext* context,
                                          const runtime::v1::RunPodSandboxRequest* request,
                                          runtime::v1::RunPodSandboxResponse* response) override;
  grpc::ServerUnaryReactor* StopPodSandbox(grpc::CallbackServerContext* context,
                                           const runtime::v1::StopPodSandboxRequest* request,
                                           runtime::v1::StopPodSandboxResponse* response) override;
  grpc::ServerUnaryReactor* RemovePodSandbox(
      grpc::CallbackServerContext* context, const runtime::v1::RemovePodSandboxRequest* request,
      runtime::v1::RemovePodSandboxResponse* response) override;
  grpc::Status PodSandboxStatus(grpc::ServerContext* context,
                                const runtime::v1::PodSandboxStatusRequest* request,
                                runtime::v1::PodSandboxStatusResponse* response) override;
  grpc::Status ListPodSandbox(grpc::ServerContext* context,
                              const runtime::v1::ListPodSandboxRequest* request,
                              runtime::v1::ListPodSandboxResponse* response) override;

  // container_handlers.cc
  grpc::ServerUnaryReactor* CreateContainer(
      grpc::CallbackServerContext* context, const runtime::v1::CreateContainerRequest* request,
      runtime::v1::CreateContainerResponse* response) override;
  grpc::ServerUnaryReactor* StartContainer(grpc::CallbackServerContext* context,
                                           const runtime::v1::StartContainerRequest* request,
                                           runtime::v1::StartContainerResponse* response) override;
  grpc::ServerUnaryReactor* StopContainer(grpc::CallbackServerContext* context,
                                          const runtime::v1::StopContainerRequest* request,
                                          runtime::v1::StopContainerResponse* response) override;
  grpc::ServerUnaryReactor* RemoveContainer(
      grpc::CallbackServerContext* context, const runtime::v1::RemoveContainerRequest* request,
      runtime::v1::RemoveContainerResponse* response) override;
  grpc::Status ContainerStatus(grpc::ServerContext* context,
                               const runtime::v1::ContainerStatusRequest* request,
                               runtime::v1::ContainerStatusResponse* response) override;
  grpc::Status ListContainers(grpc::ServerContext* context,
                              const runtime::v1::ListContainersRequest* request,
                              runtime::v1::ListContainersResponse* response) override;
  grpc::ServerUnaryReactor* UpdateContainerResources(
      grpc::CallbackServerContext* context,
      const runtime::v1::UpdateContainerResourcesRequest* request,
      runtime::v1::UpdateContainerResourcesResponse* response) override;
  grpc::ServerUnaryReactor* ReopenContainerLog(
      grpc::CallbackServerContext* context, const runtime::v1::ReopenContainerLogRequest* request,
      runtime::v1::ReopenContainerLogResponse* response) override;
  grpc::ServerUnaryReactor* ExecSync(grpc::CallbackServerContext* context,
                                     const runtime::v1::ExecSyncRequest* request,
                                     runtime::v1::ExecSyncResponse* response) override;

  // stats_handlers.cc
  grpc::Status ContainerStats(grpc::ServerContext* context,
                              const runtime::v1::ContainerStatsRequest* request,
                              runtime::v1::ContainerStatsResponse* response) override;
  grpc::Status ListContainerStats(grpc::ServerContext* context,
                                  const runtime::v1::ListContainerStatsRequest* request,
                                  runtime::v1::ListContainerStatsResponse* response) override;
  grpc::Status PodSandboxStats(grpc::ServerContext* context,
                               const runtime::v1::PodSandboxStatsRequest* request,
                               runtime::v1::PodSandboxStatsResponse* response) override;
  grpc::Status ListPodSandboxStats(grpc::ServerContext* context,
                                   const runtime::v1::ListPodSandboxStatsRequest* request,
                                   runtime::v1::ListPodSandboxStatsResponse* response) override;

  // metrics_handlers.cc
  grpc::Status ListMetricDescriptors(grpc::ServerContext* context,
                                     const runtime::v1::ListMetricDescriptorsRequest* request,
                                     runtime::v1::ListMetricDescriptorsResponse* response) override;
  grpc::Status ListPodSandboxMetrics(grpc::ServerContext* context,
                                     const runtime::v1::ListPodSandboxMetricsRequest* request,
                                     runtime::v1::ListPodSandboxMetricsResponse* response) override;

  // streaming_handlers.cc
  grpc::Status Exec(grpc::ServerContext* context, const runtime::v1::ExecRequest* request,
                    runtime::v1::ExecResponse* response) override;
  grpc::Status Attach(grpc::ServerContext* context, const runtime::v1::AttachRequest* request,
                      runtime::v1::AttachResponse* response) override;
  grpc::Status PortForward(grpc::ServerContext* context,
                           const runtime::v1::PortForwardRequest* request,
                           runtime::v1::PortForwardResponse* response) override;

  // event_handlers.cc
  grpc::ServerWriteReactor<runtime::v1::ContainerEventResponse>* GetContainerEvents(
      grpc::CallbackServerContext* context, const runtime::v1::GetEventsRequest* request) override;

 private:
  void FillContainerStats(const pod::Container& c, runtime::v1::ContainerStats* out);
  void FillSandboxStats(const pod::Sandbox& s, runtime::v1::PodSandboxStats* out);
  // The pod's series and those of its running `containers`.
  static void FillSandboxMetrics(const pod::Sandbox& s,
                                 const std::vector<pod::ContainerPtr>& containers,
                                 runtime::v1::PodSandboxMetrics* out);
  static void FillSandboxStatus(const pod::Sandbox& s, runtime::v1::PodSandboxStatus* status);
  static void FillContainerStatus(const pod::Container& c, runtime::v1::ContainerStatus* status);
  EventStreams::ResponsePtr EventResponse(const pod::ContainerEvent& event);
  // A long call: `call` runs on pool_ and finishes the call's reactor.
  grpc::ServerUnaryReactor* OnPool(grpc::CallbackServerContext* context,
                                   absl::AnyInvocable<grpc::Status() &&> call) {
    return FinishOnPool(pool_, context, std::move(call));
  }

  const config::ConfigStore* config_;  // not owned
  pod::SandboxManager* sandboxes_;     // not owned
  pod::ContainerManager* containers_;  // not owned
  streaming::Server* streaming_;       // not owned
  WorkPool* pool_;                     // not owned
  pod::CpuRates cpu_rates_;
  absl::Mutex pod_cidr_mu_;
  std::string pod_cidr_ ABSL_GUARDED_BY(pod_cidr_mu_);  // from UpdateRuntimeConfig
  // Walked every 10 s, as containerd's snapshot syncer does; never by a stats call.
  image::UsageCache layer_usage_{std::chrono::seconds(10)};
  EventStreams event_streams_;  // last: its pump calls EventResponse
};

}  // namespace berth::cri
