#pragma once

#include <array>
#include <functional>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace berth::cri {

// berthd's own process, read at each scrape from /proc/self, under the names every Prometheus
// client library uses: process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds, process_start_time_seconds.
class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// What the node runs, counted at each scrape:
//   berth_pods{state="ready"|"notready"}
//   berth_containers{state="created"|"running"|"exited"|"unknown"}
//   berth_container_monitors{state="alive"|"gone"}: of the containers not exited, those whose
//     monitor runs, and those whose monitor is gone (their exit would go unrecorded)
//   berth_pod_monitors{state="alive"|"gone"}: the same for the pause containers of ready pods
//   berth_streaming_sessions{kind}, berth_streaming_sessions_total{kind},
//   berth_streaming_sessions_refused_total{kind}: exec, attach and port-forward sessions running,
//     started and refused (kind "unknown" for a token that is unknown or expired)
struct NodeCounts {
  int pods_ready = 0;
  int pods_not_ready = 0;
  std::array<int, 4> containers{};  // by pod::Container::State: created, running, exited, unknown
  int monitors_alive = 0;
  int monitors_gone = 0;
  int pod_monitors_alive = 0;
  int pod_monitors_gone = 0;
  // By streaming::Request::Kind: exec, attach, port-forward.
  std::array<int64_t, 3> sessions_active{}, sessions_started{}, sessions_refused{};
  int64_t sessions_refused_unknown = 0;
};

class NodeCollector final : public prometheus::Collectable {
 public:
  explicit NodeCollector(std::function<NodeCounts()> count) : count_(std::move(count)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::function<NodeCounts()> count_;
};

}  // namespace berth::cri
