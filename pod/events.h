#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace berth::pod {

// CRI ContainerEventType (same values).
enum class ContainerEventType { kCreated = 0, kStarted = 1, kStopped = 2, kDeleted = 3 };

struct ContainerEvent {
  std::string id;  // container id, or the sandbox id for sandbox events
  std::string sandbox_id;
  ContainerEventType type = ContainerEventType::kCreated;
  int64_t created_at_ns = 0;
};

// Fans lifecycle events out to subscribers (GetContainerEvents streams). A subscriber that falls
// more than `kMaxQueued` events behind loses the oldest ones. Thread-safe.
class EventBus {
 public:
  static constexpr size_t kMaxQueued = 1024;

  class Subscription {
   public:
    // The next event, waiting up to `timeout`; false if none came.
    bool Next(ContainerEvent* event, absl::Duration timeout);

   private:
    friend class EventBus;
    absl::Mutex mu_;
    std::deque<ContainerEvent> queue_ ABSL_GUARDED_BY(mu_);
  };

  std::shared_ptr<Subscription> Subscribe();
  void Publish(const ContainerEvent& event);

 private:
  absl::Mutex mu_;
  std::vector<std::weak_ptr<Subscription>> subscribers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::pod
