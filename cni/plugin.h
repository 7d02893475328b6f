#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cni/conf.h"

namespace berth::cni {

struct PortMapping {
  std::string protocol = "tcp";  // tcp, udp, sctp
  int container_port = 0;
  int host_port = 0;
  std::string host_ip;
};

struct DnsConfig {
  std::vector<std::string> servers;
  std::vector<std::string> searches;
  std::vector<std::string> options;
};

// What a pod asks of its network: which namespace, which interface, and the CNI_ARGS and
// runtimeConfig capability arguments (portMappings, dns) its plugins may use.
struct AttachSpec {
  std::string container_id;  // the sandbox id
  std::string netns_path;
  std::string ifname = "eth0";
  std::vector<std::pair<std::string, std::string>> args;  // K8S_POD_NAMESPACE=..., in order
  std::vector<PortMapping> port_mappings;
  std::optional<DnsConfig> dns;
};

struct IpConfig {
  std::string address;  // CIDR, "10.88.0.5/16"
  std::string gateway;
  bool ipv6 = false;
  std::string Ip() const { return address.substr(0, address.find('/')); }
};

// The outcome of an ADD, as cached for DEL and CHECK.
struct Attachment {
  std::string network;      // network name
  std::string result_json;  // the last plugin's result
  std::vector<IpConfig> ips;
};

// Wires a pod's network namespace into a CNI network. Interface so pod tests can use a fake.
class NetworkPlugin {
 public:
  virtual ~NetworkPlugin() = default;
  // CNI ADD through the whole chain. On failure the chain is DELeted again (nothing is left) and
  // the error carries the failing plugin's msg/details and stderr.
  virtual absl::StatusOr<Attachment> Attach(const NetworkConf& network, const AttachSpec& spec) = 0;
  // CNI DEL, in reverse order, from the cached ADD (config and result). Idempotent: OK when there
  // is nothing cached, and when the namespace is already gone.
  virtual absl::Status Detach(const AttachSpec& spec) = 0;
  // CNI CHECK (cniVersion 0.4.0 and later) from the cached ADD.
  virtual absl::Status Check(const AttachSpec& spec) = 0;
  // The cached result of an ADD, if any.
  virtual absl::StatusOr<Attachment> Cached(const std::string& container_id,
                                            const std::string& ifname) = 0;
  // Every attachment with a cache entry (an ADD done or under way), as Detach takes it: the
  // orphan sweep at start DELs those of sandboxes nobody knows.
  virtual std::vector<AttachSpec> CachedAttachments() = 0;
};
using NetworkPluginPtr = std::unique_ptr<NetworkPlugin>;

// NetworkPlugin that executes the plugin binaries per the CNI spec (0.3.x, 0.4.0, 1.0.0): config on
// stdin with name, cniVersion, prevResult and runtimeConfig (the capabilities each plugin
// declares), CNI_* environment, a timeout per plugin call, results cached under cache_dir.
// Thread-safe (no shared mutable state besides the cache files, one per attachment).
class CniExecPlugin final : public NetworkPlugin {
 public:
  struct Options {
    std::vector<std::string> bin_dirs;
    std::string cache_dir;  // e.g. <root>/cni-cache: it must outlive a reboot
    std::chrono::milliseconds timeout{std::chrono::seconds(60)};
    // Told of each plugin call that failed (not found, failed, timed out, printed no result):
    // the command ("ADD", "DEL", "CHECK") and the plugin's type. Must not block.
    std::function<void(absl::string_view command, absl::string_view plugin)> on_error;
  };
  explicit CniExecPlugin(Options options) : options_(std::move(options)) {}

  absl::StatusOr<Attachment> Attach(const NetworkConf& network, const AttachSpec& spec) override;
  absl::Status Detach(const AttachSpec& spec) override;
  absl::Status Check(const AttachSpec& spec) override;
  absl::StatusOr<Attachment> Cached(const std::string& container_id,
                                    const std::string& ifname) override;
  std::vector<AttachSpec> CachedAttachments() override;

 private:
  std::string CachePath(const std::string& container_id, const std::string& ifname) const;
  Options options_;
};

// Parses the ips of a CNI result (any supported version). InvalidArgument for a malformed result.
absl::StatusOr<std::vector<IpConfig>> ParseResultIps(const std::string& result_json);

}  // namespace berth::cni
