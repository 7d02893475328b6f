#pragma once

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace berth {

// One process-wide observer of type Fn (a std::function), as berthd installs for what its
// libraries time (steps, database transactions). Meant for a constinit static: usable from any
// static initialiser, and the observer is never freed, so that no call at exit finds it gone.
// Thread-safe: a caller keeps the observer it found alive while it is replaced.
template <typename Fn>
class ProcessObserver {
 public:
  constexpr ProcessObserver() = default;

  void Set(Fn next) {
    auto replacement = next ? std::make_shared<const Fn>(std::move(next)) : nullptr;
    absl::MutexLock lock(&mu_);
    if (current_ == nullptr) current_ = new std::shared_ptr<const Fn>();
    *current_ = std::move(replacement);
  }

  // The observer, or null when none is installed.
  std::shared_ptr<const Fn> Get() const {
    absl::MutexLock lock(&mu_);
    return current_ != nullptr ? *current_ : nullptr;
  }

 private:
  mutable absl::Mutex mu_{absl::kConstInit};
  std::shared_ptr<const Fn>* current_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace berth
