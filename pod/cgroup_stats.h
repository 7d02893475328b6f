#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace berth::pod {

// One reading of a cgroup, the way kubelet's summary API and cAdvisor's metrics want it. Counters
// are cumulative; a field the host's cgroups do not offer stays 0.
struct CgroupSample {
  int64_t timestamp_ns = 0;
  uint64_t cpu_usage_ns = 0;
  uint64_t cpu_user_ns = 0;
  uint64_t cpu_system_ns = 0;
  uint64_t cpu_nano_cores = 0;  // rate since the previous sample (0 for the first)
  uint64_t cpu_periods = 0;     // CFS quota enforcement periods elapsed
  uint64_t cpu_throttled_periods = 0;
  uint64_t cpu_throttled_ns = 0;
  uint64_t memory_usage = 0;
  uint64_t memory_working_set = 0;  // usage - inactive_file
  uint64_t memory_rss = 0;
  uint64_t memory_cache = 0;
  uint64_t memory_mapped_file = 0;
  uint64_t memory_limit = 0;    // 0 = none
  uint64_t memory_failcnt = 0;  // times usage hit the limit
  uint64_t oom_kills = 0;
  uint64_t page_faults = 0;
  uint64_t major_page_faults = 0;
  uint64_t swap_usage = 0;
  uint64_t processes = 0;  // in the cgroup itself (cgroup.procs)
  uint64_t threads = 0;    // tasks, sub-cgroups included (pids.current)
};

// Whether /sys/fs/cgroup is the cgroup v2 unified hierarchy.
bool IsCgroupV2();

// Reads the memory, cpu and pids controllers of the cgroup `pid` is in, for cgroup v1 (the
// hybrid and legacy layouts) and v2. NotFound when the process is gone.
absl::StatusOr<CgroupSample> ReadCgroup(pid_t pid);

// Interface counters of the network namespace `pid` is in (/proc/<pid>/net/dev), "lo" left out.
// Empty when the process is gone.
struct InterfaceSample {
  uint64_t rx_bytes = 0, rx_packets = 0, rx_errors = 0, rx_dropped = 0;
  uint64_t tx_bytes = 0, tx_packets = 0, tx_errors = 0, tx_dropped = 0;
};
std::map<std::string, InterfaceSample> ReadInterfaces(pid_t pid);

// The interfaces of a /proc/<pid>/net/dev text, "lo" left out; malformed lines are skipped.
std::map<std::string, InterfaceSample> ParseNetDev(const std::string& text);

// Remembers the previous CPU reading per key to report usage_nano_cores. Readings not renewed
// for ten minutes (removed containers) are dropped. Thread-safe.
class CpuRates {
 public:
  void Fill(const std::string& key, CgroupSample* sample);

 private:
  absl::Mutex mu_;
  std::map<std::string, std::pair<int64_t, uint64_t>> last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::pod
