#include "cri/network_metrics.h"

#include <chrono>

namespace berth::cri {
namespace {

prometheus::Histogram::BucketBoundaries Buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

// The registry merges registrations of the same family: one family, three label sets.
prometheus::Family<prometheus::Histogram>& Family(prometheus::Registry& registry) {
  return prometheus::BuildHistogram()
      .Name("berth_cni_operation_duration_seconds")
      .Help("Duration of CNI plugin chain calls, by operation")
      .Register(registry);
}

template <typename F>
auto Timed(prometheus::Histogram& histogram, F&& f) {
  const auto start = std::chrono::steady_clock::now();
  auto result = f();
  histogram.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return result;
}

}  // namespace

InstrumentedNetworkPlugin::InstrumentedNetworkPlugin(cni::NetworkPlugin* inner,
                                                     prometheus::Registry& registry)
    : inner_(inner),
      add_(Family(registry).Add({{"operation", "ADD"}}, Buckets())),
      del_(Family(registry).Add({{"operation", "DEL"}}, Buckets())),
      check_(Family(registry).Add({{"operation", "CHECK"}}, Buckets())) {}

absl::StatusOr<cni::Attachment> InstrumentedNetworkPlugin::Attach(const cni::NetworkConf& network,
                                                                  const cni::AttachSpec& spec) {
  return Timed(add_, [&] { return inner_->Attach(network, spec); });
}

absl::Status InstrumentedNetworkPlugin::Detach(const cni::AttachSpec& spec) {
  return Timed(del_, [&] { return inner_->Detach(spec); });
}

absl::Status InstrumentedNetworkPlugin::Check(const cni::AttachSpec& spec) {
  return Timed(check_, [&] { return inner_->Check(spec); });
}

}  // namespace berth::cri
