#include "cri/metrics.h"

#include "base/steps.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace berth::cri {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Exposition(const Metrics& metrics) {
  return prometheus::TextSerializer().Serialize(metrics.registry()->Collect());
}

TEST(MetricsTest, CountsOperationsErrorsAndLatency) {
  Metrics metrics;
  metrics.RecordOperation("Version", "OK", 0.0004);
  metrics.RecordOperation("Version", "OK", 0.002);
  metrics.RecordOperation("RunPodSandbox", "UNIMPLEMENTED", 0.5);
  std::string text = Exposition(metrics);
  EXPECT_THAT(text, HasSubstr("berth_operations_total{operation=\"Version\"} 2"));
  EXPECT_THAT(text, HasSubstr("berth_operations_total{operation=\"RunPodSandbox\"} 1"));
  EXPECT_THAT(text, HasSubstr(
      "berth_operations_errors_total{code=\"UNIMPLEMENTED\",operation=\"RunPodSandbox\"} 1"));
  EXPECT_THAT(text, Not(HasSubstr("berth_operations_errors_total{code=\"OK\"")));
  EXPECT_THAT(text,
              HasSubstr("berth_operations_latency_seconds_bucket{operation=\"Version\",le=\"0.001\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("berth_operations_latency_seconds_bucket{operation=\"Version\",le=\"240\"} 2"));
  EXPECT_THAT(text, HasSubstr("berth_operations_latency_seconds_count{operation=\"Version\"} 2"));
}

TEST(MetricsTest, StepsOfAnOperationAreObservedByStep) {
  Metrics metrics;
  SetStepObserver([&](absl::string_view operation, absl::string_view step, double seconds) {
    metrics.RecordStep(operation, step, seconds);
  });
  {
    StepTimer steps("RunPodSandbox");
    steps.Step("validate");
    steps.Step("persist");
    steps.Step("persist");
  }
  SetStepObserver(nullptr);
  StepTimer("RunPodSandbox").Step("after");  // no observer: nothing recorded
  std::string text = Exposition(metrics);
  EXPECT_THAT(text, HasSubstr("# TYPE berth_operation_step_duration_seconds histogram"));
  EXPECT_THAT(text, HasSubstr("berth_operation_step_duration_seconds_count{operation="
                              "\"RunPodSandbox\",step=\"validate\"} 1"));
  EXPECT_THAT(text, HasSubstr("berth_operation_step_duration_seconds_count{operation="
                              "\"RunPodSandbox\",step=\"persist\"} 2"));
  EXPECT_THAT(text, Not(HasSubstr("step=\"after\"")));
}

TEST(MetricsTest, ServeFailsClearlyWhenAddressCannotBeBound) {
  Metrics metrics;
  absl::Status status = metrics.Serve("256.0.0.1:1", std::chrono::milliseconds(0));
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("256.0.0.1:1"));
}

}  // namespace
}  // namespace berth::cri
