#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace berth::pod {

// One lock per sandbox or container, held across a whole lifecycle operation (start, stop,
// remove, update) so that operations on one object run one at a time while other objects and
// readers go on. Thread-safe.
class OpLocks {
 public:
  std::shared_ptr<absl::Mutex> Get(const std::string& id) {
    absl::MutexLock lock(&mu_);
    auto& m = locks_[id];
    if (!m) m = std::make_shared<absl::Mutex>();
    return m;
  }
  // The object is gone; a holder of its lock keeps it alive until it lets go.
  void Erase(const std::string& id) {
    absl::MutexLock lock(&mu_);
    locks_.erase(id);
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<absl::Mutex>> locks_ ABSL_GUARDED_BY(mu_);
};

// At most n holders at a time; the others wait their turn. For work that gains nothing from
// running all at once and only crowds the CPU when it does: a node drain tears down every pod at
// the same moment. Thread-safe.
class Slots {
 public:
  explicit Slots(int n) : free_(n) {}
  Slots(const Slots&) = delete;
  Slots& operator=(const Slots&) = delete;

  // A taken slot, given back when it goes.
  class Held {
   public:
    explicit Held(Slots* slots) : slots_(slots) {}
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;
    ~Held() {
      absl::MutexLock lock(&slots_->mu_);
      ++slots_->free_;
    }

   private:
    Slots* slots_;
  };
  // Waits for a free slot.
  [[nodiscard]] std::unique_ptr<Held> Take() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* free) { return *free > 0; }, &free_));
    --free_;
    return std::make_unique<Held>(this);
  }

 private:
  absl::Mutex mu_;
  int free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::pod
