#pragma once

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "config/config.h"

namespace berth::config {

// Holds the daemon's current configuration. Readers take a snapshot that stays valid while they use
// it; SIGHUP swaps in a new one. Thread-safe.
class ConfigStore {
 public:
  explicit ConfigStore(Config config)
      : current_(std::make_shared<const Config>(std::move(config))) {}
  ConfigStore(const ConfigStore&) = delete;
  ConfigStore& operator=(const ConfigStore&) = delete;

  std::shared_ptr<const Config> Get() const {
    absl::MutexLock lock(&mu_);
    return current_;
  }

  void Set(Config config) {
    auto next = std::make_shared<const Config>(std::move(config));
    absl::MutexLock lock(&mu_);
    current_ = std::move(next);
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const Config> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::config
