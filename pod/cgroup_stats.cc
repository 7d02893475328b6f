#include "pod/cgroup_stats.h"

#include <sys/statfs.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

namespace berth::pod {
namespace {

uint64_t ReadNumber(const std::string& path) {
  std::ifstream in(path);
  std::string v;
  uint64_t n = 0;
  if (in >> v) (void)absl::SimpleAtoi(v, &n);  // "max" stays 0
  return n;
}

std::map<std::string, uint64_t> ReadKeyed(const std::string& path) {
  std::map<std::string, uint64_t> out;
  std::ifstream in(path);
  std::string key;
  uint64_t value;
  while (in >> key >> value) out[key] = value;
  return out;
}

// controller ("memory", "cpuacct", "pids", or "" for v2) -> path inside the hierarchy.
std::map<std::string, std::string> CgroupPaths(pid_t pid) {
  std::map<std::string, std::string> out;
  std::ifstream in(absl::StrCat("/proc/", pid, "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[1].empty()) {
      out[""] = parts[2];
      continue;
    }
    for (absl::string_view c : absl::StrSplit(parts[1], ',')) out[std::string(c)] = parts[2];
  }
  return out;
}

}  // namespace

bool IsCgroupV2() {
  struct statfs fs;
  return ::statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

absl::StatusOr<CgroupSample> ReadCgroup(pid_t pid) {
  std::map<std::string, std::string> paths = CgroupPaths(pid);
  if (paths.empty()) return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
  CgroupSample s;
  s.timestamp_ns = absl::ToUnixNanos(absl::Now());
  if (IsCgroupV2()) {
    const std::string dir = "/sys/fs/cgroup" + paths[""];
    s.cpu_usage_ns = ReadKeyed(dir + "/cpu.stat")["usage_usec"] * 1000;
    s.memory_usage = ReadNumber(dir + "/memory.current");
    s.memory_limit = ReadNumber(dir + "/memory.max");
    std::map<std::string, uint64_t> stat = ReadKeyed(dir + "/memory.stat");
    const uint64_t inactive = stat["inactive_file"];
    s.memory_working_set = s.memory_usage > inactive ? s.memory_usage - inactive : 0;
    s.memory_rss = stat["anon"];
    s.page_faults = stat["pgfault"];
    s.major_page_faults = stat["pgmajfault"];
    s.swap_usage = ReadNumber(dir + "/memory.swap.current");
    s.processes = ReadNumber(dir + "/pids.current");
    return s;
  }
  // Mounted as cpuacct, or as cpu,cpuacct with cpuacct a link to it.
  s.cpu_usage_ns = ReadNumber("/sys/fs/cgroup/cpuacct" + paths["cpuacct"] + "/cpuacct.usage");
  if (s.cpu_usage_ns == 0) {
    s.cpu_usage_ns = ReadNumber("/sys/fs/cgroup/cpu,cpuacct" + paths["cpuacct"] + "/cpuacct.usage");
  }
  const std::string memory = "/sys/fs/cgroup/memory" + paths["memory"];
  s.memory_usage = ReadNumber(memory + "/memory.usage_in_bytes");
  const uint64_t limit = ReadNumber(memory + "/memory.limit_in_bytes");
  s.memory_limit = limit >= (uint64_t{1} << 62) ? 0 : limit;  // "unlimited" is a huge number
  std::map<std::string, uint64_t> stat = ReadKeyed(memory + "/memory.stat");
  const uint64_t inactive = stat["total_inactive_file"];
  s.memory_working_set = s.memory_usage > inactive ? s.memory_usage - inactive : 0;
  s.memory_rss = stat["total_rss"];
  s.page_faults = stat["total_pgfault"];
  s.major_page_faults = stat["total_pgmajfault"];
  s.swap_usage = stat["total_swap"];
  s.processes = ReadNumber("/sys/fs/cgroup/pids" + paths["pids"] + "/pids.current");
  return s;
}

std::map<std::string, InterfaceSample> ReadInterfaces(pid_t pid) {
  std::map<std::string, InterfaceSample> out;
  std::ifstream in(absl::StrCat("/proc/", pid, "/net/dev"));
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name(absl::StripAsciiWhitespace(line.substr(0, colon)));
    if (name == "lo") continue;
    std::istringstream fields(line.substr(colon + 1));
    uint64_t v[16] = {};
    for (uint64_t& x : v) fields >> x;
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs ...
    out[name] = {v[0], v[2], v[8], v[10]};
  }
  return out;
}

void CpuRates::Fill(const std::string& key, CgroupSample* s) {
  absl::MutexLock lock(&mu_);
  auto it = last_.find(key);
  if (it != last_.end() && s->timestamp_ns > it->second.first &&
      s->cpu_usage_ns >= it->second.second) {
    const double seconds = static_cast<double>(s->timestamp_ns - it->second.first) / 1e9;
    s->cpu_nano_cores =
        static_cast<uint64_t>(static_cast<double>(s->cpu_usage_ns - it->second.second) / seconds);
  }
  last_[key] = {s->timestamp_ns, s->cpu_usage_ns};
  constexpr int64_t kStaleNs = int64_t{600} * 1000000000;
  for (auto it = last_.begin(); it != last_.end();) {
    it = s->timestamp_ns - it->second.first > kStaleNs ? last_.erase(it) : std::next(it);
  }
}

}  // namespace berth::pod
