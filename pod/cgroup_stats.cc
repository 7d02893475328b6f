#include "pod/cgroup_stats.h"

#include <sys/statfs.h>
#include <unistd.h>

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

uint64_t CountLines(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  uint64_t n = 0;
  while (std::getline(in, line)) n += !line.empty();
  return n;
}

void ReadV2(const std::string& dir, CgroupSample* s) {
  std::map<std::string, uint64_t> cpu = ReadKeyed(dir + "/cpu.stat");
  s->cpu_usage_ns = cpu["usage_usec"] * 1000;
  s->cpu_user_ns = cpu["user_usec"] * 1000;
  s->cpu_system_ns = cpu["system_usec"] * 1000;
  s->cpu_periods = cpu["nr_periods"];
  s->cpu_throttled_periods = cpu["nr_throttled"];
  s->cpu_throttled_ns = cpu["throttled_usec"] * 1000;
  s->memory_usage = ReadNumber(dir + "/memory.current");
  s->memory_limit = ReadNumber(dir + "/memory.max");
  std::map<std::string, uint64_t> stat = ReadKeyed(dir + "/memory.stat");
  const uint64_t inactive = stat["inactive_file"];
  s->memory_working_set = s->memory_usage > inactive ? s->memory_usage - inactive : 0;
  s->memory_rss = stat["anon"];
  s->memory_cache = stat["file"];
  s->memory_mapped_file = stat["file_mapped"];
  s->page_faults = stat["pgfault"];
  s->major_page_faults = stat["pgmajfault"];
  // v2 has no failcnt: "max" counts the times usage was about to go over memory.max, as v1's did.
  std::map<std::string, uint64_t> events = ReadKeyed(dir + "/memory.events");
  s->memory_failcnt = events["max"];
  s->oom_kills = events["oom_kill"];
  s->swap_usage = ReadNumber(dir + "/memory.swap.current");
  s->threads = ReadNumber(dir + "/pids.current");
  s->processes = CountLines(dir + "/cgroup.procs");
}

// The v1 directory of `controller` for a process. cpu and cpuacct are often mounted together as
// cpu,cpuacct, not always with a link by each name.
std::string V1Dir(const std::map<std::string, std::string>& paths, const std::string& controller) {
  auto it = paths.find(controller);
  const std::string path = it == paths.end() ? "/" : it->second;
  const std::string dir = "/sys/fs/cgroup/" + controller + path;
  if ((controller == "cpu" || controller == "cpuacct") && ::access(dir.c_str(), F_OK) != 0) {
    return "/sys/fs/cgroup/cpu,cpuacct" + path;
  }
  return dir;
}

void ReadV1(const std::map<std::string, std::string>& paths, CgroupSample* s) {
  const std::string cpuacct = V1Dir(paths, "cpuacct");
  s->cpu_usage_ns = ReadNumber(cpuacct + "/cpuacct.usage");
  // cpuacct.stat counts in USER_HZ ticks.
  const uint64_t ns_per_tick = 1000000000 / static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
  std::map<std::string, uint64_t> ticks = ReadKeyed(cpuacct + "/cpuacct.stat");
  s->cpu_user_ns = ticks["user"] * ns_per_tick;
  s->cpu_system_ns = ticks["system"] * ns_per_tick;
  std::map<std::string, uint64_t> cpu = ReadKeyed(V1Dir(paths, "cpu") + "/cpu.stat");
  s->cpu_periods = cpu["nr_periods"];
  s->cpu_throttled_periods = cpu["nr_throttled"];
  s->cpu_throttled_ns = cpu["throttled_time"];
  const std::string memory = V1Dir(paths, "memory");
  s->memory_usage = ReadNumber(memory + "/memory.usage_in_bytes");
  const uint64_t limit = ReadNumber(memory + "/memory.limit_in_bytes");
  s->memory_limit = limit >= (uint64_t{1} << 62) ? 0 : limit;  // "unlimited" is a huge number
  std::map<std::string, uint64_t> stat = ReadKeyed(memory + "/memory.stat");
  const uint64_t inactive = stat["total_inactive_file"];
  s->memory_working_set = s->memory_usage > inactive ? s->memory_usage - inactive : 0;
  s->memory_rss = stat["total_rss"];
  s->memory_cache = stat["total_cache"];
  s->memory_mapped_file = stat["total_mapped_file"];
  s->page_faults = stat["total_pgfault"];
  s->major_page_faults = stat["total_pgmajfault"];
  s->swap_usage = stat["total_swap"];
  s->memory_failcnt = ReadNumber(memory + "/memory.failcnt");
  s->oom_kills = ReadKeyed(memory + "/memory.oom_control")["oom_kill"];  // since Linux 4.13
  const std::string pids = V1Dir(paths, "pids");
  s->threads = ReadNumber(pids + "/pids.current");
  s->processes = CountLines(pids + "/cgroup.procs");
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
    ReadV2("/sys/fs/cgroup" + paths[""], &s);
  } else {
    ReadV1(paths, &s);
  }
  return s;
}

std::map<std::string, InterfaceSample> ParseNetDev(const std::string& text) {
  std::map<std::string, InterfaceSample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;  // the two header lines
    std::string name(absl::StripAsciiWhitespace(line.substr(0, colon)));
    if (name == "lo") continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line.substr(colon + 1), ' ', absl::SkipEmpty());
    if (fields.size() < 16) continue;
    // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop ...
    uint64_t v[12] = {};
    for (size_t i = 0; i < 12; ++i) (void)absl::SimpleAtoi(fields[i], &v[i]);
    out[name] = {.rx_bytes = v[0],
                 .rx_packets = v[1],
                 .rx_errors = v[2],
                 .rx_dropped = v[3],
                 .tx_bytes = v[8],
                 .tx_packets = v[9],
                 .tx_errors = v[10],
                 .tx_dropped = v[11]};
  }
  return out;
}

std::map<std::string, InterfaceSample> ReadInterfaces(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/net/dev"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseNetDev(text.str());
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
