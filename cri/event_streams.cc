#include "cri/event_streams.h"

#include <deque>
#include <optional>

namespace berth::cri {
namespace {

// How long the pump waits on the bus before it looks at its stop token: the bus has no way to
// wake it, so this bounds how long shutting down waits for it.
constexpr absl::Duration kPumpPoll = absl::Milliseconds(250);

}  // namespace

// One GetContainerEvents call: a queue of responses and at most one write in flight. Finish is
// deferred while a write is in flight, and never called under mu_. Deletes itself in OnDone,
// after gRPC's last callback.
class EventStreams::Stream final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit Stream(EventStreams* owner) : owner_(owner) {}

  // Queues `response` (dropping the oldest when kMaxQueued are waiting) and writes if idle.
  void Offer(ResponsePtr response) {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;
    if (queue_.size() >= kMaxQueued) queue_.pop_front();
    queue_.push_back(std::move(response));
    WriteNext();
  }

  // Sends the response headers now rather than with the first event: a client that waits for
  // them knows that it is subscribed.
  void Announce() {
    absl::MutexLock lock(&mu_);
    if (!finishing_) StartSendInitialMetadata();
  }

  void End(grpc::Status status) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      finish = FinishOnce(std::move(status));
    }
    if (finish.has_value()) Finish(*std::move(finish));
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      in_flight_.reset();
      if (finishing_) {
        finish = std::exchange(deferred_status_, std::nullopt);
      } else if (!ok) {
        // The client is gone (or the call was cancelled); OnCancel may not come first.
        finish = FinishOnce(grpc::Status::OK);
      } else {
        WriteNext();
      }
    }
    if (finish.has_value()) Finish(*std::move(finish));
  }

  // kubelet cancels the stream when it stops or restarts its evented PLEG.
  void OnCancel() override { End(grpc::Status::OK); }

  void OnDone() override {
    owner_->Forget(this);
    delete this;
  }

 private:
  void WriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (in_flight_ != nullptr || queue_.empty()) return;
    in_flight_ = std::move(queue_.front());
    queue_.pop_front();
    StartWrite(in_flight_.get());
  }

  // The status to Finish() with, by the caller once it has released mu_ (once finished, gRPC may
  // run OnDone, which deletes this, on another thread at once); nullopt if the stream is
  // finishing already, or until the write in flight is done (OnWriteDone finishes it then).
  std::optional<grpc::Status> FinishOnce(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_) return std::nullopt;
    finishing_ = true;
    queue_.clear();
    if (in_flight_ != nullptr) {
      deferred_status_ = std::move(status);
      return std::nullopt;
    }
    return status;
  }

  EventStreams* const owner_;
  absl::Mutex mu_;
  std::deque<ResponsePtr> queue_ ABSL_GUARDED_BY(mu_);
  ResponsePtr in_flight_ ABSL_GUARDED_BY(mu_);  // kept alive until OnWriteDone
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> deferred_status_ ABSL_GUARDED_BY(mu_);
};

EventStreams::EventStreams(pod::EventBus* bus, Builder build)
    : build_(std::move(build)),
      subscription_(bus->Subscribe()),
      pump_([this](std::stop_token stop) { Pump(stop); }) {}

EventStreams::~EventStreams() {
  End();
  pump_.request_stop();
  pump_.join();
}

grpc::ServerWriteReactor<EventStreams::Response>* EventStreams::Open() {
  auto* stream = new Stream(this);
  absl::MutexLock lock(&mu_);
  if (ended_) {
    // Not in streams_: its OnDone finds nothing to forget.
    stream->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "berthd is shutting down"));
    return stream;
  }
  streams_.insert(stream);
  stream->Announce();
  return stream;
}

void EventStreams::End() {
  absl::MutexLock lock(&mu_);
  ended_ = true;
  for (Stream* stream : streams_) stream->End(grpc::Status::OK);
}

size_t EventStreams::open() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

void EventStreams::Forget(Stream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void EventStreams::Pump(std::stop_token stop) {
  pod::ContainerEvent event;
  while (!stop.stop_requested()) {
    if (!subscription_->Next(&event, kPumpPoll)) continue;
    {
      absl::MutexLock lock(&mu_);
      if (streams_.empty()) continue;
    }
    // Built once for every stream, outside the lock: it reads the stores.
    ResponsePtr response = build_(event);
    absl::MutexLock lock(&mu_);
    for (Stream* stream : streams_) stream->Offer(response);
  }
}

}  // namespace berth::cri
