#pragma once

#include <memory>
#include <thread>

#include "grpcpp/server_builder.h"

namespace berth::cri {

// Keeps the CRI socket read at all times in a server that mixes synchronous and callback methods.
// In such a ("hybrid") server gRPC 1.51 gives the synchronous methods completion queues that do
// not poll; the socket is read by the two threads that run callback methods, which wait for work
// at most 1 s and then sleep 100 ms. When neither has had a callback to run for a second (the
// lists and statuses kubelet sends are not callbacks), both sleep and for up to 100 ms nobody
// reads a request: kubelet's reads stalled that long every 1.1 s. One thread of ours waits on a
// completion queue of its own that nothing completes, so it polls the socket all along. Not
// thread-safe: Start and Stop from the thread that builds and shuts down the server.
class GrpcPoller {
 public:
  // Adds the completion queue: before builder->BuildAndStart().
  explicit GrpcPoller(grpc::ServerBuilder* builder);
  ~GrpcPoller();  // Stop()
  GrpcPoller(const GrpcPoller&) = delete;
  GrpcPoller& operator=(const GrpcPoller&) = delete;

  // Once the server is started.
  void Start();
  // Once the server is shut down (gRPC requires its queues be shut down after it). Idempotent.
  void Stop();

 private:
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace berth::cri
