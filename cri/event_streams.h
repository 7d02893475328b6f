#pragma once

#include <functional>
#include <memory>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "api.pb.h"
#include "grpcpp/support/server_callback.h"
#include "pod/events.h"

namespace berth::cri {

// The GetContainerEvents streams, fed from the event bus with no thread held per stream: one pump
// thread takes each event off the bus, builds its response once, and queues it on every open
// stream; each stream writes its queue out through gRPC's callback API at its client's pace. A
// stream more than kMaxQueued responses behind loses the oldest (as the bus does for its
// subscribers), so that a slow or gone client holds up neither the bus nor the other streams.
// Owns the pump and the open streams' reactors (each deletes itself when gRPC is done with it).
// Thread-safe.
class EventStreams {
 public:
  using Response = runtime::v1::ContainerEventResponse;
  using ResponsePtr = std::shared_ptr<const Response>;
  // Builds the response for one event (with the pod's and its containers' current status).
  using Builder = std::function<ResponsePtr(const pod::ContainerEvent&)>;

  static constexpr size_t kMaxQueued = pod::EventBus::kMaxQueued;

  // Subscribes to `bus` (which must outlive this) and starts the pump.
  EventStreams(pod::EventBus* bus, Builder build);
  // End(), then stops the pump. The streams' last callbacks still use this: destroy it only once
  // the gRPC server is shut down (Server::Wait has returned).
  ~EventStreams();
  EventStreams(const EventStreams&) = delete;
  EventStreams& operator=(const EventStreams&) = delete;

  // The reactor of a new GetContainerEvents call: it gets every event the pump takes from now
  // on, until the client cancels or End(); its response headers are sent at once (so a client
  // can wait for them to know it is subscribed). After End(), finished at once with UNAVAILABLE.
  grpc::ServerWriteReactor<Response>* Open();

  // Finishes every open stream with OK and refuses new ones: berthd is shutting down, and gRPC's
  // shutdown would otherwise wait for the streams' clients to go away.
  void End();

  // Streams open now (for tests and metrics).
  size_t open() const;

 private:
  class Stream;

  void Pump(std::stop_token stop);
  // Called by a stream's OnDone, before it deletes itself.
  void Forget(Stream* stream);

  const Builder build_;
  const std::shared_ptr<pod::EventBus::Subscription> subscription_;
  mutable absl::Mutex mu_;
  // Lock order: mu_, then a stream's own lock. gRPC never runs a stream's OnDone (which takes mu_)
  // inline in a call the pump or End() makes on it.
  std::set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::jthread pump_;  // last: stops before the rest goes
};

}  // namespace berth::cri
