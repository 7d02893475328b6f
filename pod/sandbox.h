#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cni/plugin.h"
#include "pod/pod_files.h"
#include "pod/resources.h"

namespace berth::pod {

// CRI NamespaceMode.
enum class NamespaceMode { kPod = 0, kContainer = 1, kNode = 2, kTarget = 3 };

// What kubelet asks for in RunPodSandbox, without protobuf.
struct SandboxSpec {
  std::string name, uid, namespace_name;
  uint32_t attempt = 0;
  std::string hostname;
  std::string log_directory;
  std::optional<DnsSettings> dns;
  std::vector<cni::PortMapping> port_mappings;
  std::map<std::string, std::string> labels, annotations;
  std::string cgroup_parent;
  // LinuxPodSandboxConfig resources (the sum of the containers') and overhead: kubelet enforces
  // them on the pod's cgroup; berth keeps and reports them, it does not apply them.
  std::optional<ResourcesSpec> resources;
  std::optional<ResourcesSpec> overhead;
  bool host_network = false;
  bool host_ipc = false;
  NamespaceMode pid_mode = NamespaceMode::kPod;
  std::map<std::string, std::string> sysctls;
  std::string runtime_handler;  // "" = default_runtime
};

// A pod sandbox. The state machine:
//
//   RunPodSandbox ──> READY ──StopPodSandbox──> NOTREADY ──RemovePodSandbox──> (gone)
//                       └──── pause process exits ───┘
//
// Records are immutable snapshots; changes go through the manager, persisted before published.
struct Sandbox {
  enum class State { kReady, kNotReady };
  std::string id;
  SandboxSpec spec;
  State state = State::kReady;
  // StopPodSandbox finished: the containers and the pause are stopped, the network detached and
  // /dev/shm unmounted. A stopped sandbox never runs again, so a later stop has nothing to do.
  bool stopped = false;
  int64_t created_at_ns = 0;
  std::string runtime_handler;  // resolved
  std::string netns_path;       // "" for host network
  std::vector<cni::IpConfig> ips;
  std::string cni_result;
  pid_t pid = 0;
  std::string oci_spec;
  std::vector<std::string> pause_layers;  // chain ids when the pause runs from pause.image
  // kubelet's key for the name: name_namespace_uid_attempt.
  std::string Key() const;
};
using SandboxPtr = std::shared_ptr<const Sandbox>;

std::string SandboxToJson(const Sandbox& sandbox);
absl::StatusOr<Sandbox> SandboxFromJson(const std::string& json);

}  // namespace berth::pod
