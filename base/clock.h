#pragma once

#include "absl/time/time.h"

namespace berth {

// The time of day as berth records it: when objects were created, started and finished, and
// how long a kept result has waited. Injected into the managers so tests can set and move it.
// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // absl::Now().
  static const Clock& Real();
};

}  // namespace berth
