#pragma once

#include <chrono>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace berth::cri {

// The daemon's Prometheus registry, the per-RPC operation metrics, and the HTTP endpoint that
// serves them. Other modules register their own families on registry(). Thread-safe.
class Metrics {
 public:
  Metrics();
  ~Metrics();  // stops serving at once (see StopServing)
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Serves /metrics on address ("host:port"), retrying for `retry_for` while the port is taken.
  // Unavailable (naming the address) if it cannot bind.
  absl::Status Serve(const std::string& address,
                     std::chrono::milliseconds retry_for = std::chrono::seconds(5));
  // Stops the HTTP server. civetweb's stop waits for its listening thread, which sees the stop
  // only between polls of up to 2 s: a connection of our own to the port ends the wait, so a
  // berthd stop (and a restart under systemd) does not take 2 s more. Idempotent.
  void StopServing();

  // A CRI call begins (+1) or ends (-1): berth_operations_in_flight{operation} (ExecSync probes
  // waiting, event streams open, pulls under way).
  void InFlight(absl::string_view operation, int delta);

  // Counts one finished RPC: its latency always, an error with its code unless code is "OK".
  void RecordOperation(absl::string_view operation, absl::string_view code, double seconds);

  // Counts one image pull: result "success" or "failure", bytes downloaded, duration.
  void RecordPull(bool success, int64_t bytes, double seconds);

  // One step of an operation (base/steps.h): berth_operation_step_duration_seconds.
  void RecordStep(absl::string_view operation, absl::string_view step, double seconds);

  // A stage of an image pull (image::ImagePuller::StageObserver): "resolve", "download" and
  // "unpack" in berth_image_pull_stage_duration_seconds{stage}; layers downloaded and reused in
  // berth_image_pull_layers_total{result}; bytes unpacked in berth_image_unpacked_bytes_total.
  void RecordPullStage(absl::string_view stage, double seconds, int64_t bytes);

  // A CNI plugin call that failed: berth_cni_errors_total{operation, plugin}.
  void RecordCniError(absl::string_view operation, absl::string_view plugin);

  // A container exit as recorded: berth_container_exits_total{reason}, and for reason OOMKilled
  // berth_container_oom_kills_total{namespace, pod} (the pod's namespace and name).
  void RecordExit(absl::string_view reason, absl::string_view pod_namespace,
                  absl::string_view pod_name);

  // One database transaction: berth_db_transaction_duration_seconds{result="commit"|"rollback"}.
  void RecordTransaction(double seconds, bool committed);

  // What the start-up recovery found, as gauges (berth_recovery_*): pods and containers loaded,
  // containers settled, and what the orphan sweep removed, by kind.
  struct Recovery {
    int pods = 0;
    int containers = 0;
    int settled = 0;
    int orphan_runtime_containers = 0;
    int orphan_network_attachments = 0;
    int orphan_mounts = 0;
    int orphan_paths = 0;
  };
  void RecordRecovery(const Recovery& recovery);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Also serves what `collectable` collects at each scrape, until Remove; the caller keeps it
  // alive meanwhile (the exposer holds it weakly). No-op before Serve.
  void Add(const std::shared_ptr<prometheus::Collectable>& collectable);
  void Remove(const std::shared_ptr<prometheus::Collectable>& collectable);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& operations_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Gauge>& in_flight_;
  prometheus::Family<prometheus::Counter>& pulls_;
  prometheus::Counter& pull_bytes_;
  prometheus::Histogram& pull_duration_;
  prometheus::Family<prometheus::Histogram>& steps_;
  prometheus::Family<prometheus::Histogram>& pull_stages_;
  prometheus::Family<prometheus::Counter>& pull_layers_;
  prometheus::Counter& unpacked_bytes_;
  prometheus::Family<prometheus::Counter>& cni_errors_;
  prometheus::Family<prometheus::Counter>& exits_;
  prometheus::Family<prometheus::Counter>& oom_kills_;
  prometheus::Family<prometheus::Histogram>& transactions_;
  prometheus::Family<prometheus::Gauge>& recovery_;
  // The exposer holds collectables weakly.
  const std::shared_ptr<prometheus::Collectable> process_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;  // what Serve was given
};

}  // namespace berth::cri
