#pragma once

#include <cstddef>
#include <deque>
#include <list>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace berth {

// Runs blocking work off threads that must stay free: the CRI's long calls (stops, removes,
// creates, exec, pulls) off gRPC's, so that a call that waits for a container's grace period
// holds no request thread; the runtime deletes of exited containers off the exit watcher's.
// Workers are started on demand up to `max_threads` and end after `idle_timeout` without work;
// tasks beyond max_threads wait in a FIFO queue rather than fail. Owns its threads: Shutdown()
// (or the destructor) runs what is queued and joins them all. Thread-safe; Shutdown() and the
// destructor must not be called from one of the pool's own tasks.
class WorkPool {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  struct Options {
    size_t max_threads = 256;
    absl::Duration idle_timeout = absl::Seconds(30);
  };

  explicit WorkPool(Options options);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `task` and starts a worker for it if none is idle and fewer than max_threads run.
  // Unavailable after Shutdown() (the task is dropped, not run).
  absl::Status Submit(Task task);

  // Takes no more tasks, runs those queued, and joins every worker. Idempotent.
  void Shutdown();

  // Workers alive now, and tasks waiting for one (for metrics and tests).
  size_t threads() const;
  size_t queued() const;
  size_t idle() const;  // workers waiting for a task

 private:
  using Worker = std::list<std::thread>::iterator;

  void Work(Worker self);
  // The next task for worker `self`, waiting up to idle_timeout; nullopt when it is to end (idle
  // too long, or shutting down with nothing queued), and then `self` has been retired.
  std::optional<Task> Next(Worker self);
  // Joins the workers that have ended.
  void Reap();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllEnded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  std::list<std::thread> workers_ ABSL_GUARDED_BY(mu_);  // alive
  std::list<std::thread> ended_ ABSL_GUARDED_BY(mu_);    // returned or returning; not joined
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;                 // workers waiting in Next()
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace berth
