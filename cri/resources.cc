#include "cri/resources.h"

namespace berth::cri {

pod::ResourcesSpec ToResources(const runtime::v1::LinuxContainerResources& r) {
  pod::ResourcesSpec out;
  out.cpu_period = r.cpu_period();
  out.cpu_quota = r.cpu_quota();
  out.cpu_shares = r.cpu_shares();
  out.memory_limit = r.memory_limit_in_bytes();
  out.memory_swap_limit = r.memory_swap_limit_in_bytes();
  out.oom_score_adj = r.oom_score_adj();
  out.cpuset_cpus = r.cpuset_cpus();
  out.cpuset_mems = r.cpuset_mems();
  for (const runtime::v1::HugepageLimit& h : r.hugepage_limits()) {
    out.hugepage_limits[h.page_size()] = h.limit();
  }
  out.unified = {r.unified().begin(), r.unified().end()};
  return out;
}

void FromResources(const pod::ResourcesSpec& r, runtime::v1::LinuxContainerResources* out) {
  out->set_cpu_period(r.cpu_period);
  out->set_cpu_quota(r.cpu_quota);
  out->set_cpu_shares(r.cpu_shares);
  out->set_memory_limit_in_bytes(r.memory_limit);
  out->set_memory_swap_limit_in_bytes(r.memory_swap_limit);
  out->set_oom_score_adj(r.oom_score_adj);
  out->set_cpuset_cpus(r.cpuset_cpus);
  out->set_cpuset_mems(r.cpuset_mems);
  for (const auto& [size, limit] : r.hugepage_limits) {
    runtime::v1::HugepageLimit* h = out->add_hugepage_limits();
    h->set_page_size(size);
    h->set_limit(limit);
  }
  out->mutable_unified()->insert(r.unified.begin(), r.unified.end());
}

}  // namespace berth::cri
