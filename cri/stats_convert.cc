#include "cri/stats_convert.h"

namespace berth::cri {

void FillCpu(const pod::CgroupSample& s, runtime::v1::CpuUsage* cpu) {
  cpu->set_timestamp(s.timestamp_ns);
  cpu->mutable_usage_core_nano_seconds()->set_value(s.cpu_usage_ns);
  cpu->mutable_usage_nano_cores()->set_value(s.cpu_nano_cores);
}

void FillMemory(const pod::CgroupSample& s, runtime::v1::MemoryUsage* m) {
  m->set_timestamp(s.timestamp_ns);
  m->mutable_working_set_bytes()->set_value(s.memory_working_set);
  if (s.memory_limit > 0) {
    m->mutable_available_bytes()->set_value(
        s.memory_limit > s.memory_working_set ? s.memory_limit - s.memory_working_set : 0);
  }
  m->mutable_usage_bytes()->set_value(s.memory_usage);
  m->mutable_rss_bytes()->set_value(s.memory_rss);
  m->mutable_page_faults()->set_value(s.page_faults);
  m->mutable_major_page_faults()->set_value(s.major_page_faults);
}

bool FillNetwork(const std::map<std::string, pod::InterfaceSample>& interfaces,
                 int64_t timestamp_ns, runtime::v1::NetworkUsage* network) {
  if (interfaces.empty()) return false;
  network->set_timestamp(timestamp_ns);
  for (const auto& [name, i] : interfaces) {
    runtime::v1::NetworkInterfaceUsage* u = network->add_interfaces();
    u->set_name(name);
    u->mutable_rx_bytes()->set_value(i.rx_bytes);
    u->mutable_rx_errors()->set_value(i.rx_errors);
    u->mutable_tx_bytes()->set_value(i.tx_bytes);
    u->mutable_tx_errors()->set_value(i.tx_errors);
    if (name == "eth0") *network->mutable_default_interface() = *u;
  }
  if (!network->has_default_interface()) {
    *network->mutable_default_interface() = network->interfaces(0);
  }
  return true;
}

}  // namespace berth::cri
