#include "cri/metrics.h"

#include <chrono>
#include <exception>
#include <thread>

#include "absl/strings/str_cat.h"

namespace berth::cri {
namespace {

// From 1 ms to 4 min: a Status call and a slow image pull both land in a useful bucket.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240};
  return kBuckets;
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      operations_(prometheus::BuildCounter()
                      .Name("berth_operations_total")
                      .Help("CRI operations served, by operation")
                      .Register(*registry_)),
      errors_(prometheus::BuildCounter()
                  .Name("berth_operations_errors_total")
                  .Help("CRI operations that failed, by operation and gRPC code")
                  .Register(*registry_)),
      latency_(prometheus::BuildHistogram()
                   .Name("berth_operations_latency_seconds")
                   .Help("Latency of CRI operations, by operation")
                   .Register(*registry_)),
      pulls_(prometheus::BuildCounter()
                 .Name("berth_image_pulls_total")
                 .Help("Image pulls, by result (success, failure)")
                 .Register(*registry_)),
      pull_bytes_(prometheus::BuildCounter()
                      .Name("berth_image_pull_bytes_total")
                      .Help("Bytes of image layers downloaded")
                      .Register(*registry_)
                      .Add({})),
      pull_duration_(prometheus::BuildHistogram()
                         .Name("berth_image_pull_duration_seconds")
                         .Help("Duration of image pulls")
                         .Register(*registry_)
                         .Add({}, prometheus::Histogram::BucketBoundaries{
                                      0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                                      300, 600})),
      steps_(prometheus::BuildHistogram()
                 .Name("berth_operation_step_duration_seconds")
                 .Help("Duration of the steps of pod and container operations, by operation and "
                       "step")
                 .Register(*registry_)) {}

absl::Status Metrics::Serve(const std::string& address, std::chrono::milliseconds retry_for) {
  // A berthd that was just stopped may hold the port for a moment while its HTTP server winds
  // down (a restart by systemd or an operator): retry briefly before giving up.
  const auto deadline = std::chrono::steady_clock::now() + retry_for;
  for (;;) {
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(address);
      break;
    } catch (const std::exception& e) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return absl::UnavailableError(absl::StrCat("serve metrics on ", address, ": ", e.what()));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  exposer_->RegisterCollectable(registry_);
  return absl::OkStatus();
}

void Metrics::RecordOperation(absl::string_view operation, absl::string_view code, double seconds) {
  std::string op(operation);
  operations_.Add({{"operation", op}}).Increment();
  latency_.Add({{"operation", op}}, LatencyBuckets()).Observe(seconds);
  if (code != "OK") {
    errors_.Add({{"operation", op}, {"code", std::string(code)}}).Increment();
  }
}

void Metrics::RecordPull(bool success, int64_t bytes, double seconds) {
  pulls_.Add({{"result", success ? "success" : "failure"}}).Increment();
  pull_bytes_.Increment(static_cast<double>(bytes));
  pull_duration_.Observe(seconds);
}

void Metrics::RecordStep(absl::string_view operation, absl::string_view step, double seconds) {
  // From 100 us: most steps of a pod start take a few milliseconds.
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
      5, 10, 30, 60};
  steps_.Add({{"operation", std::string(operation)}, {"step", std::string(step)}}, kBuckets)
      .Observe(seconds);
}

}  // namespace berth::cri
