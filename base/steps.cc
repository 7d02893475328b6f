#include "base/steps.h"

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace berth {
namespace {

absl::Mutex observer_mu(absl::kConstInit);
// Shared: a step being recorded keeps the observer it found alive while it is replaced.
std::shared_ptr<const StepObserver>* observer ABSL_GUARDED_BY(observer_mu) = nullptr;

std::shared_ptr<const StepObserver> CurrentObserver() {
  absl::MutexLock lock(&observer_mu);
  return observer != nullptr ? *observer : nullptr;
}

}  // namespace

void SetStepObserver(StepObserver next) {
  auto replacement = next ? std::make_shared<const StepObserver>(std::move(next)) : nullptr;
  absl::MutexLock lock(&observer_mu);
  if (observer == nullptr) observer = new std::shared_ptr<const StepObserver>();
  *observer = std::move(replacement);
}

StepTimer::StepTimer(absl::string_view operation)
    : operation_(operation), last_(std::chrono::steady_clock::now()) {}

void StepTimer::Step(absl::string_view step) {
  const auto now = std::chrono::steady_clock::now();
  if (std::shared_ptr<const StepObserver> observe = CurrentObserver()) {
    (*observe)(operation_, step, std::chrono::duration<double>(now - last_).count());
  }
  last_ = now;
}

}  // namespace berth
