#include "cri/node_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/file_util.h"

namespace berth::cri {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily One(const char* name, const char* help, MetricType type, double value) {
  ClientMetric m;
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return MetricFamily{name, help, type, {m}};
}

// The host's boot time, seconds since the epoch ("btime" in /proc/stat).
double BootTime() {
  absl::StatusOr<std::string> stat = ReadFile("/proc/stat");
  if (!stat.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    double btime = 0;
    if (absl::ConsumePrefix(&line, "btime ") && absl::SimpleAtod(line, &btime)) return btime;
  }
  return 0;
}

}  // namespace

std::vector<MetricFamily> ProcessCollector::Collect() const {
  std::vector<MetricFamily> families;
  // /proc/self/stat: the fields after the command name (which may hold spaces), from field 3.
  absl::StatusOr<std::string> stat = ReadFile("/proc/self/stat");
  if (stat.ok() && stat->rfind(')') != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(stat->substr(stat->rfind(')') + 2), ' ');
    auto field = [&f](size_t n) {  // n as in proc(5), 1-based
      double v = 0;
      return n >= 3 && n - 3 < f.size() && absl::SimpleAtod(f[n - 3], &v) ? v : 0.0;
    };
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    families.push_back(One("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                           MetricType::Counter, (field(14) + field(15)) / ticks));
    families.push_back(One("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                           MetricType::Gauge, field(23)));
    families.push_back(One("process_resident_memory_bytes", "Resident memory size in bytes.",
                           MetricType::Gauge, field(24) * page));
    families.push_back(One("process_start_time_seconds",
                           "Start time of the process since unix epoch in seconds.",
                           MetricType::Gauge, BootTime() + field(22) / ticks));
  }
  std::error_code ec;
  int fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  families.push_back(One("process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
                         std::max(0, fds - 1)));  // not the one reading the directory
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    families.push_back(One("process_max_fds", "Maximum number of open file descriptors.",
                           MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  return families;
}

std::vector<MetricFamily> NodeCollector::Collect() const {
  const NodeCounts c = count_();
  // One family, one sample per value of its label.
  auto family = [](const char* name, const char* help, MetricType type, const char* label,
                   std::initializer_list<std::pair<const char*, double>> samples) {
    MetricFamily f{name, help, type, {}};
    for (const auto& [value, n] : samples) {
      ClientMetric m;
      m.label = {{label, value}};
      (type == MetricType::Counter ? m.counter.value : m.gauge.value) = n;
      f.metric.push_back(m);
    }
    return f;
  };
  auto d = [](int64_t n) { return static_cast<double>(n); };
  return {
      family("berth_pods", "Pod sandboxes berthd knows, by state", MetricType::Gauge, "state",
             {{"ready", d(c.pods_ready)}, {"notready", d(c.pods_not_ready)}}),
      family("berth_containers", "Containers berthd knows, by state", MetricType::Gauge, "state",
             {{"created", d(c.containers[0])},
              {"running", d(c.containers[1])},
              {"exited", d(c.containers[2])},
              {"unknown", d(c.containers[3])}}),
      family("berth_container_monitors", "Monitors of the containers not exited: alive, or gone",
             MetricType::Gauge, "state",
             {{"alive", d(c.monitors_alive)}, {"gone", d(c.monitors_gone)}}),
      family("berth_pod_monitors",
             "Monitors of the ready pods' pause containers: alive, or gone", MetricType::Gauge,
             "state", {{"alive", d(c.pod_monitors_alive)}, {"gone", d(c.pod_monitors_gone)}}),
      family("berth_streaming_sessions", "Streaming sessions running, by kind", MetricType::Gauge,
             "kind",
             {{"exec", d(c.sessions_active[0])},
              {"attach", d(c.sessions_active[1])},
              {"portforward", d(c.sessions_active[2])}}),
      family("berth_streaming_sessions_total", "Streaming sessions started, by kind",
             MetricType::Counter, "kind",
             {{"exec", d(c.sessions_started[0])},
              {"attach", d(c.sessions_started[1])},
              {"portforward", d(c.sessions_started[2])}}),
      family("berth_streaming_sessions_refused_total",
             "Streaming requests refused (bad token, protocol or upgrade, too many sessions), by "
             "kind",
             MetricType::Counter, "kind",
             {{"exec", d(c.sessions_refused[0])},
              {"attach", d(c.sessions_refused[1])},
              {"portforward", d(c.sessions_refused[2])},
              {"unknown", d(c.sessions_refused_unknown)}}),
  };
}

}  // namespace berth::cri
