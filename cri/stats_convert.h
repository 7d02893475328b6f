#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "api.pb.h"
#include "pod/cgroup_stats.h"

namespace berth::cri {

// Readings of pod/cgroup_stats in the CRI's stats messages.
void FillCpu(const pod::CgroupSample& s, runtime::v1::CpuUsage* cpu);
void FillMemory(const pod::CgroupSample& s, runtime::v1::MemoryUsage* memory);

// A pod's interface counters as CRI NetworkUsage: every interface, and eth0 (else the first) as
// the default one. False, leaving `network` untouched, when there are none (the network
// namespace is gone or has only loopback): kubelet reads default_interface of any network it is
// given without checking it (v1.28 crashes on a network without one).
bool FillNetwork(const std::map<std::string, pod::InterfaceSample>& interfaces,
                 int64_t timestamp_ns, runtime::v1::NetworkUsage* network);

}  // namespace berth::cri
