#include "pod/resources.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "nlohmann/json.hpp"

namespace berth::pod {
namespace {

using nlohmann::json;

// The kernel's bounds for cpu.shares: runc reads the value back and fails if the kernel clamped
// it; on v2 it turns shares into a cpu.weight that must stay within 1..10000.
constexpr int64_t kMinShares = 2;
constexpr int64_t kMaxShares = 262144;

// The host and whose resources these are, for the log.
struct Target {
  const CgroupSupport& host;
  const std::string& who;

  void Skip(const std::string& field, const std::string& why) const {
    spdlog::debug("{}: {} not applied: {}", who, field, why);
  }
};

std::string NoController(const CgroupSupport& host, const std::string& controller) {
  if (host.v2()) return absl::StrCat("the ", controller, " controller is not enabled");
  if (controller == "hugetlb" && host.v2_controllers.contains("hugetlb")) {
    return "hugetlb is only on the unified mount, which runc in v1 mode does not use";
  }
  return absl::StrCat("no v1 ", controller, " hierarchy is mounted");
}

json Cpu(const ResourcesSpec& r, const Target& t) {
  const CgroupSupport& host = t.host;
  json cpu = json::object();
  if (r.cpu_shares > 0 || r.cpu_quota != 0 || r.cpu_period > 0) {
    if (!host.Has("cpu")) {
      t.Skip("cpu_shares/cpu_quota/cpu_period", NoController(host, "cpu"));
    } else {
      if (r.cpu_shares > 0) {
        const int64_t shares = std::clamp(r.cpu_shares, kMinShares, kMaxShares);
        if (shares != r.cpu_shares) {
          spdlog::debug("{}: cpu_shares {} is outside {}..{}: {} applied", t.who, r.cpu_shares,
                        kMinShares, kMaxShares, shares);
        }
        cpu["shares"] = shares;
      }
      if (r.cpu_quota != 0) cpu["quota"] = r.cpu_quota;
      if (r.cpu_period > 0) cpu["period"] = r.cpu_period;
    }
  }
  if (!r.cpuset_cpus.empty() || !r.cpuset_mems.empty()) {
    if (!host.Has("cpuset")) {
      t.Skip("cpuset_cpus/cpuset_mems", NoController(host, "cpuset"));
    } else {
      if (!r.cpuset_cpus.empty()) cpu["cpus"] = r.cpuset_cpus;
      if (!r.cpuset_mems.empty()) cpu["mems"] = r.cpuset_mems;
    }
  }
  return cpu;
}

json Memory(const ResourcesSpec& r, const Target& t) {
  const CgroupSupport& host = t.host;
  json memory = json::object();
  if (r.memory_limit == 0 && r.memory_swap_limit == 0) return memory;
  if (!host.Has("memory")) {
    t.Skip("memory_limit_in_bytes/memory_swap_limit_in_bytes", NoController(host, "memory"));
    return memory;
  }
  if (r.memory_limit != 0) memory["limit"] = r.memory_limit;
  if (r.memory_swap_limit == 0) return memory;
  if (!host.swap) {
    t.Skip("memory_swap_limit_in_bytes", "no swap accounting (memory.memsw.*, memory.swap.max)");
  } else if (r.memory_swap_limit > 0 &&
             (r.memory_limit <= 0 || r.memory_swap_limit < r.memory_limit)) {
    // OCI's swap is memory+swap (-1 = unlimited); runc refuses it below the memory limit.
    t.Skip("memory_swap_limit_in_bytes", "memory+swap without a memory limit at or below it");
  } else {
    memory["swap"] = r.memory_swap_limit;
  }
  return memory;
}

bool HasPageSize(const CgroupSupport& host, const std::string& size) {
  return std::find(host.hugepage_sizes.begin(), host.hugepage_sizes.end(), size) !=
         host.hugepage_sizes.end();
}

json Hugepages(const ResourcesSpec& r, const Target& t) {
  const CgroupSupport& host = t.host;
  json limits = json::array();
  if (r.hugepage_limits.empty()) return limits;
  if (!host.Has("hugetlb")) {
    t.Skip("hugepage_limits", NoController(host, "hugetlb"));
    return limits;
  }
  for (const auto& [size, limit] : r.hugepage_limits) {
    if (!HasPageSize(host, size)) {
      t.Skip(absl::StrCat("hugepage_limits ", size), "the host has no huge pages of that size");
      continue;
    }
    limits.push_back({{"pageSize", size}, {"limit", limit}});
  }
  return limits;
}

// Why runc could not write the v2 file `key` in a container's cgroup on `host`; "" if it can.
std::string UnifiedProblem(const std::string& key, const CgroupSupport& host) {
  const size_t dot = key.find('.');
  if (dot == std::string::npos || dot == 0 || key.find('/') != std::string::npos) {
    return "not a cgroup interface file name";
  }
  const std::string controller = key.substr(0, dot);
  if (controller == "cgroup") return "";  // the core interface files are in every cgroup
  if (!host.Has(controller)) return NoController(host, controller);
  if (absl::StartsWith(key, "memory.swap.") && !host.swap) return "no swap accounting";
  if ((key == "io.weight" || key == "io.bfq.weight") && !host.io_weight) {
    return "no io weight (neither BFQ nor io.cost)";
  }
  if (controller == "hugetlb") {
    const size_t end = key.find('.', dot + 1);
    if (!HasPageSize(host, key.substr(dot + 1, end - dot - 1))) {
      return "the host has no huge pages of that size";
    }
  }
  return "";
}

json Unified(const ResourcesSpec& r, const Target& t) {
  const CgroupSupport& host = t.host;
  json unified = json::object();
  if (r.unified.empty()) return unified;
  if (!host.v2()) {
    t.Skip("unified", "runc sets cgroup v2 files only on a cgroup v2 host");
    return unified;
  }
  for (const auto& [key, value] : r.unified) {
    if (const std::string problem = UnifiedProblem(key, host); !problem.empty()) {
      t.Skip(absl::StrCat("unified ", key), problem);
    } else {
      unified[key] = value;
    }
  }
  return unified;
}

}  // namespace

json OciResources(const ResourcesSpec& r, const CgroupSupport& host, const std::string& who) {
  const Target t{host, who};
  json resources = json::object();
  if (json cpu = Cpu(r, t); !cpu.empty()) resources["cpu"] = std::move(cpu);
  if (json memory = Memory(r, t); !memory.empty()) resources["memory"] = std::move(memory);
  if (json pages = Hugepages(r, t); !pages.empty()) resources["hugepageLimits"] = std::move(pages);
  if (json unified = Unified(r, t); !unified.empty()) resources["unified"] = std::move(unified);
  return resources;
}

ResourcesSpec MergeResourceUpdate(const ResourcesSpec& current, const ResourcesSpec& update) {
  ResourcesSpec merged = current;
  auto set = [](auto& to, const auto& from) {
    if (from != std::decay_t<decltype(from)>{}) to = from;
  };
  set(merged.cpu_period, update.cpu_period);
  set(merged.cpu_quota, update.cpu_quota);
  set(merged.cpu_shares, update.cpu_shares);
  set(merged.memory_limit, update.memory_limit);
  set(merged.memory_swap_limit, update.memory_swap_limit);
  // A new memory limit without a swap limit means no swap above it, as containerd reads it:
  // the old memory+swap limit could otherwise be below the new memory limit, which cgroup v1
  // refuses (crictl update --memory sends only the memory limit).
  if (update.memory_limit != 0 && update.memory_swap_limit == 0 && current.memory_swap_limit > 0) {
    merged.memory_swap_limit = update.memory_limit;
  }
  set(merged.cpuset_cpus, update.cpuset_cpus);
  set(merged.cpuset_mems, update.cpuset_mems);
  // oom_score_adj stays: it is the process's, and `runc update` does not change it.
  for (const auto& [size, limit] : update.hugepage_limits) merged.hugepage_limits[size] = limit;
  for (const auto& [key, value] : update.unified) merged.unified[key] = value;
  return merged;
}

std::map<std::string, std::string> SandboxResourceAnnotations(const ResourcesSpec& pod) {
  return {{"io.kubernetes.cri.sandbox-cpu-period", absl::StrCat(pod.cpu_period)},
          {"io.kubernetes.cri.sandbox-cpu-quota", absl::StrCat(pod.cpu_quota)},
          {"io.kubernetes.cri.sandbox-cpu-shares", absl::StrCat(pod.cpu_shares)},
          {"io.kubernetes.cri.sandbox-memory", absl::StrCat(pod.memory_limit)}};
}

void to_json(json& j, const ResourcesSpec& r) {
  j = {{"cpu_period", r.cpu_period},
       {"cpu_quota", r.cpu_quota},
       {"cpu_shares", r.cpu_shares},
       {"memory_limit", r.memory_limit},
       {"memory_swap_limit", r.memory_swap_limit},
       {"oom_score_adj", r.oom_score_adj},
       {"cpuset_cpus", r.cpuset_cpus},
       {"cpuset_mems", r.cpuset_mems},
       {"hugepage_limits", r.hugepage_limits},
       {"unified", r.unified}};
}

void from_json(const json& j, ResourcesSpec& r) {
  const ResourcesSpec unset;
  r.cpu_period = j.value("cpu_period", unset.cpu_period);
  r.cpu_quota = j.value("cpu_quota", unset.cpu_quota);
  r.cpu_shares = j.value("cpu_shares", unset.cpu_shares);
  r.memory_limit = j.value("memory_limit", unset.memory_limit);
  r.memory_swap_limit = j.value("memory_swap_limit", unset.memory_swap_limit);
  r.oom_score_adj = j.value("oom_score_adj", unset.oom_score_adj);
  r.cpuset_cpus = j.value("cpuset_cpus", unset.cpuset_cpus);
  r.cpuset_mems = j.value("cpuset_mems", unset.cpuset_mems);
  r.hugepage_limits = j.value("hugepage_limits", unset.hugepage_limits);
  r.unified = j.value("unified", unset.unified);
}

}  // namespace berth::pod
