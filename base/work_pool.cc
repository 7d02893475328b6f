#include "base/work_pool.h"

#include <algorithm>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace berth {

WorkPool::WorkPool(Options options)
    : options_{.max_threads = std::max<size_t>(1, options.max_threads),
               .idle_timeout = options.idle_timeout} {}

WorkPool::~WorkPool() { Shutdown(); }

absl::Status WorkPool::Submit(Task task) {
  Reap();
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("berthd is shutting down");
  queue_.push_back(std::move(task));
  if (idle_ >= queue_.size() || workers_.size() >= options_.max_threads) return absl::OkStatus();
  Worker self = workers_.emplace(workers_.end());
  try {
    // The worker's first step is to take mu_, held here until *self is assigned.
    *self = std::thread(&WorkPool::Work, this, self);
  } catch (const std::system_error& e) {
    workers_.erase(self);
    // The workers there are will come to the task; with none, nothing would.
    if (!workers_.empty()) return absl::OkStatus();
    queue_.pop_back();
    return absl::ResourceExhaustedError(absl::StrCat("cannot start a worker thread: ", e.what()));
  }
  return absl::OkStatus();
}

void WorkPool::Work(Worker self) {
  while (std::optional<Task> task = Next(self)) std::move (*task)();
}

std::optional<WorkPool::Task> WorkPool::Next(Worker self) {
  absl::MutexLock lock(&mu_);
  ++idle_;
  mu_.AwaitWithTimeout(absl::Condition(this, &WorkPool::HasWorkOrStopping), options_.idle_timeout);
  --idle_;
  if (!queue_.empty()) {
    Task task = std::move(queue_.front());
    queue_.pop_front();
    return task;
  }
  ended_.splice(ended_.end(), workers_, self);
  return std::nullopt;
}

bool WorkPool::HasWorkOrStopping() const { return !queue_.empty() || stopping_; }

bool WorkPool::AllEnded() const { return workers_.empty(); }

void WorkPool::Reap() {
  std::list<std::thread> ended;
  {
    absl::MutexLock lock(&mu_);
    ended.swap(ended_);
  }
  for (std::thread& t : ended) t.join();
}

void WorkPool::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // Workers end only once the queue is empty: what was queued runs first.
    mu_.Await(absl::Condition(this, &WorkPool::AllEnded));
  }
  Reap();
}

size_t WorkPool::threads() const {
  absl::MutexLock lock(&mu_);
  return workers_.size();
}

size_t WorkPool::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

size_t WorkPool::idle() const {
  absl::MutexLock lock(&mu_);
  return idle_;
}

}  // namespace berth
