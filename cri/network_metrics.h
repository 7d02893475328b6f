#pragma once

#include "cni/plugin.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace berth::cri {

// A NetworkPlugin that measures the one it wraps: berth_cni_operation_duration_seconds{operation}
// for ADD, DEL and CHECK (failed calls included: slow failures are what one looks for).
class InstrumentedNetworkPlugin final : public cni::NetworkPlugin {
 public:
  InstrumentedNetworkPlugin(cni::NetworkPlugin* inner, prometheus::Registry& registry);

  absl::StatusOr<cni::Attachment> Attach(const cni::NetworkConf& network,
                                         const cni::AttachSpec& spec) override;
  absl::Status Detach(const cni::AttachSpec& spec) override;
  absl::Status Check(const cni::AttachSpec& spec) override;
  absl::StatusOr<cni::Attachment> Cached(const std::string& container_id,
                                         const std::string& ifname) override {
    return inner_->Cached(container_id, ifname);
  }
  std::vector<cni::AttachSpec> CachedAttachments() override { return inner_->CachedAttachments(); }

 private:
  cni::NetworkPlugin* inner_;  // not owned
  prometheus::Histogram& add_;
  prometheus::Histogram& del_;
  prometheus::Histogram& check_;
};

}  // namespace berth::cri
