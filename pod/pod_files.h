#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::pod {

// A pod's DNS settings as kubelet sends them (CRI DNSConfig).
struct DnsSettings {
  std::vector<std::string> servers;
  std::vector<std::string> searches;
  std::vector<std::string> options;
};

// The per-pod files every container of the pod bind-mounts: hostname, resolv.conf and hosts, in
// `dir` (under run_root). resolv.conf comes from `dns` when kubelet sent one, otherwise it is a
// copy of the host's (`host_resolv_conf`). InvalidArgument for a bad hostname or DNS entry;
// files are written atomically.
absl::Status WritePodFiles(const std::string& dir, const std::string& hostname,
                           const std::optional<DnsSettings>& dns,
                           const std::string& host_resolv_conf = "/etc/resolv.conf");

// resolv.conf text for `dns` (search, nameserver and options lines; at most 6 search domains
// and 3 nameservers are honoured by resolvers, kubelet already trims; we keep what we get).
std::string ResolvConf(const DnsSettings& dns);

// /etc/hosts for a pod: localhost entries, and the pod's hostname on its IP when known.
std::string HostsFile(const std::string& hostname, const std::string& ip);

// A hostname the kernel takes (1..64 bytes) made of printable ASCII without spaces, so that it
// cannot break /etc/hosts or /etc/hostname.
bool IsValidHostname(const std::string& hostname);

}  // namespace berth::pod
