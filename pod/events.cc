#include "pod/events.h"

namespace berth::pod {

bool EventBus::Subscription::Next(ContainerEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  bool (*ready)(std::deque<ContainerEvent>*) = [](std::deque<ContainerEvent>* q) {
    return !q->empty();
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(ready, &queue_), timeout)) return false;
  *event = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

std::shared_ptr<EventBus::Subscription> EventBus::Subscribe() {
  auto sub = std::make_shared<Subscription>();
  absl::MutexLock lock(&mu_);
  subscribers_.push_back(sub);
  return sub;
}

void EventBus::Publish(const ContainerEvent& event) {
  absl::MutexLock lock(&mu_);
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    std::shared_ptr<Subscription> sub = it->lock();
    if (!sub) {
      it = subscribers_.erase(it);
      continue;
    }
    absl::MutexLock sub_lock(&sub->mu_);
    if (sub->queue_.size() >= kMaxQueued) sub->queue_.pop_front();
    sub->queue_.push_back(event);
    ++it;
  }
}

}  // namespace berth::pod
