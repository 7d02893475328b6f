#include "cri/metrics.h"

#include <netdb.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"
#include "cri/node_metrics.h"

namespace berth::cri {
namespace {

// From 1 ms to 4 min: a Status call and a slow image pull both land in a useful bucket.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240};
  return kBuckets;
}

// From 50 us: a transaction is a few rows and one fsync.
const prometheus::Histogram::BucketBoundaries& TransactionBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
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
      in_flight_(prometheus::BuildGauge()
                     .Name("berth_operations_in_flight")
                     .Help("CRI calls under way, by operation")
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
                 .Register(*registry_)),
      pull_stages_(prometheus::BuildHistogram()
                       .Name("berth_image_pull_stage_duration_seconds")
                       .Help("Duration of the stages of image pulls: resolve (manifests and "
                             "config), download and unpack (per layer)")
                       .Register(*registry_)),
      pull_layers_(prometheus::BuildCounter()
                       .Name("berth_image_pull_layers_total")
                       .Help("Layers of pulled images, by result (downloaded, reused)")
                       .Register(*registry_)),
      unpacked_bytes_(prometheus::BuildCounter()
                          .Name("berth_image_unpacked_bytes_total")
                          .Help("Bytes of layer content unpacked (uncompressed tar streams)")
                          .Register(*registry_)
                          .Add({})),
      cni_errors_(prometheus::BuildCounter()
                      .Name("berth_cni_errors_total")
                      .Help("CNI plugin calls that failed, by operation (ADD, DEL, CHECK) and "
                            "plugin type")
                      .Register(*registry_)),
      exits_(prometheus::BuildCounter()
                 .Name("berth_container_exits_total")
                 .Help("Container exits recorded, by reason (Completed, Error, OOMKilled)")
                 .Register(*registry_)),
      oom_kills_(prometheus::BuildCounter()
                     .Name("berth_container_oom_kills_total")
                     .Help("Containers killed by the kernel's OOM killer, by pod namespace and name")
                     .Register(*registry_)),
      transactions_(prometheus::BuildHistogram()
                        .Name("berth_db_transaction_duration_seconds")
                        .Help("Duration of berthd's database transactions, BEGIN to COMMIT or "
                              "rollback, by result")
                        .Register(*registry_)),
      recovery_(prometheus::BuildGauge()
                    .Name("berth_recovery_objects")
                    .Help("What berthd's start-up recovery found: pods and containers loaded, "
                          "containers settled, orphans removed, by kind")
                    .Register(*registry_)),
      process_(std::make_shared<ProcessCollector>()) {
  // Present from the start, so that a rate over them is defined before the first exit.
  for (const char* reason : {"Completed", "Error", "OOMKilled"}) exits_.Add({{"reason", reason}});
  for (const char* result : {"downloaded", "reused"}) pull_layers_.Add({{"result", result}});
  for (const char* stage : {"resolve", "download", "unpack"}) {
    pull_stages_.Add({{"stage", stage}}, LatencyBuckets());
  }
  transactions_.Add({{"result", "commit"}}, TransactionBuckets());
  transactions_.Add({{"result", "rollback"}}, TransactionBuckets());
}

Metrics::~Metrics() { StopServing(); }

namespace {

// Connects to `port` at the host of `address` ("host:port", "[v6]:port"; the wildcard addresses
// as loopback) and closes at once.
void Knock(const std::string& address, int port) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (fd.valid() && ::connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) break;
  }
  ::freeaddrinfo(found);
}

}  // namespace

void Metrics::StopServing() {
  if (exposer_ == nullptr) return;
  const std::vector<int> ports = exposer_->GetListeningPorts();
  std::atomic<bool> stopped{false};
  std::thread knocker([&] {
    while (!stopped.load()) {
      for (int port : ports) Knock(address_, port);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  exposer_.reset();
  stopped = true;
  knocker.join();
}

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
  address_ = address;
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(process_);
  return absl::OkStatus();
}

void Metrics::Add(const std::shared_ptr<prometheus::Collectable>& collectable) {
  if (exposer_ != nullptr) exposer_->RegisterCollectable(collectable);
}

void Metrics::Remove(const std::shared_ptr<prometheus::Collectable>& collectable) {
  if (exposer_ != nullptr) exposer_->RemoveCollectable(collectable);
}

void Metrics::InFlight(absl::string_view operation, int delta) {
  in_flight_.Add({{"operation", std::string(operation)}}).Increment(delta);
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

void Metrics::RecordPullStage(absl::string_view stage, double seconds, int64_t bytes) {
  if (stage == "reuse") {
    pull_layers_.Add({{"result", "reused"}}).Increment();
    return;
  }
  pull_stages_.Add({{"stage", std::string(stage)}}, LatencyBuckets()).Observe(seconds);
  if (stage == "download") pull_layers_.Add({{"result", "downloaded"}}).Increment();
  if (stage == "unpack") unpacked_bytes_.Increment(static_cast<double>(bytes));
}

void Metrics::RecordCniError(absl::string_view operation, absl::string_view plugin) {
  cni_errors_.Add({{"operation", std::string(operation)}, {"plugin", std::string(plugin)}})
      .Increment();
}

void Metrics::RecordExit(absl::string_view reason, absl::string_view pod_namespace,
                         absl::string_view pod_name) {
  exits_.Add({{"reason", std::string(reason)}}).Increment();
  if (reason == "OOMKilled") {
    oom_kills_.Add({{"namespace", std::string(pod_namespace)}, {"pod", std::string(pod_name)}})
        .Increment();
  }
}

void Metrics::RecordTransaction(double seconds, bool committed) {
  transactions_.Add({{"result", committed ? "commit" : "rollback"}}, TransactionBuckets())
      .Observe(seconds);
}

void Metrics::RecordRecovery(const Recovery& r) {
  const std::pair<const char*, int> found[] = {
      {"pods_loaded", r.pods},
      {"containers_loaded", r.containers},
      {"containers_settled", r.settled},
      {"orphan_runtime_containers_removed", r.orphan_runtime_containers},
      {"orphan_network_attachments_removed", r.orphan_network_attachments},
      {"orphan_mounts_removed", r.orphan_mounts},
      {"orphan_paths_removed", r.orphan_paths},
  };
  for (const auto& [what, n] : found) recovery_.Add({{"what", what}}).Set(n);
}

}  // namespace berth::cri
