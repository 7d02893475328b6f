#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "absl/strings/string_view.h"

namespace berth {

// Where the time of a pod start, a create or a stop goes. The flows mark their steps with a
// StepTimer; berthd observes them as the histogram berth_operation_step_duration_seconds
// {operation, step}, so that the slow step of a slow call can be seen on a live node. Without an
// observer (unit tests, tools) a step costs one clock read.
using StepObserver =
    std::function<void(absl::string_view operation, absl::string_view step, double seconds)>;
// Installs the observer for the whole process (an empty one removes it). Thread-safe; a step
// recorded meanwhile goes to the old observer or the new one.
void SetStepObserver(StepObserver observer);

class StepTimer {
 public:
  explicit StepTimer(absl::string_view operation);
  StepTimer(const StepTimer&) = delete;
  StepTimer& operator=(const StepTimer&) = delete;

  // Records the time since the previous step (or since the timer was made) as `step`.
  void Step(absl::string_view step);

 private:
  std::string operation_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace berth
