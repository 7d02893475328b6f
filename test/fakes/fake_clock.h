#pragma once

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"
#include "base/clock.h"

namespace berth::testing {

// A clock that moves only when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000))
      : ns_(absl::ToUnixNanos(start)) {}

  absl::Time Now() const override { return absl::FromUnixNanos(ns_.load()); }
  void Advance(absl::Duration d) { ns_ += absl::ToInt64Nanoseconds(d); }

 private:
  std::atomic<int64_t> ns_;
};

}  // namespace berth::testing
