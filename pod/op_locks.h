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

}  // namespace berth::pod
