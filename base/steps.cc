#include "base/steps.h"

#include <memory>
#include <utility>

#include "base/observer.h"

namespace berth {
namespace {

constinit ProcessObserver<StepObserver> observer;

}  // namespace

void SetStepObserver(StepObserver next) { observer.Set(std::move(next)); }

StepTimer::StepTimer(absl::string_view operation)
    : operation_(operation), last_(std::chrono::steady_clock::now()) {}

void StepTimer::Step(absl::string_view step) {
  const auto now = std::chrono::steady_clock::now();
  if (std::shared_ptr<const StepObserver> observe = observer.Get()) {
    (*observe)(operation_, step, std::chrono::duration<double>(now - last_).count());
  }
  last_ = now;
}

}  // namespace berth
