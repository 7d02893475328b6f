#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pod/resources.h"
#include "pod/sandbox.h"

namespace berth::pod {

// CRI MountPropagation.
enum class Propagation { kPrivate = 0, kHostToContainer = 1, kBidirectional = 2 };

struct MountSpec {
  std::string container_path;
  std::string host_path;
  bool readonly = false;
  bool recursive_readonly = false;
  Propagation propagation = Propagation::kPrivate;
};

struct DeviceSpec {
  std::string container_path;
  std::string host_path;
  std::string permissions;  // "rwm"
};

// CRI LinuxContainerSecurityContext.
struct SecuritySpec {
  std::vector<std::string> add_capabilities;   // "NET_ADMIN" or "CAP_NET_ADMIN", "ALL"
  std::vector<std::string> drop_capabilities;
  std::vector<std::string> add_ambient_capabilities;
  bool privileged = false;
  bool readonly_rootfs = false;
  bool no_new_privs = false;
  std::optional<int64_t> run_as_user;
  std::string run_as_username;
  std::optional<int64_t> run_as_group;
  std::vector<int64_t> supplemental_groups;
  bool strict_supplemental_groups = false;  // SupplementalGroupsPolicy Strict
  std::string seccomp;            // "runtime/default", "localhost"; "" = unconfined (CRI: not set)
  std::string seccomp_localhost;  // profile path for "localhost"
  std::string apparmor;           // "" = runtime default, "unconfined", "localhost"
  std::string apparmor_localhost;
  std::optional<std::vector<std::string>> masked_paths;    // set: replaces the defaults
  std::optional<std::vector<std::string>> readonly_paths;
  NamespaceMode pid_mode = NamespaceMode::kPod;
  std::string target_id;  // pid_mode TARGET: the container whose PID namespace to join
};

// What kubelet asks for in CreateContainer, without protobuf.
struct ContainerSpec {
  std::string name;
  uint32_t attempt = 0;
  std::string image;  // as the request names it (ref, digest or id)
  std::vector<std::string> command, args;
  std::string working_dir;
  std::vector<std::pair<std::string, std::string>> envs;
  std::vector<MountSpec> mounts;
  std::vector<DeviceSpec> devices;
  std::map<std::string, std::string> labels, annotations;
  std::string log_path;  // relative to the sandbox's log_directory
  bool stdin = false, stdin_once = false, tty = false;
  ResourcesSpec resources;
  SecuritySpec security;
};

// A container. The state machine:
//
//   CreateContainer ──> CREATED ──StartContainer──> RUNNING ──exit/StopContainer──> EXITED
//                          └──────────── start fails / pod stops ──────────────────────┘
//   RemoveContainer from any state (a running one is killed first) ──> (gone)
//
// CREATED is a bundle (root filesystem and spec) and a record; the runtime makes the container
// and its monitor at StartContainer (pid and monitor_pid are 0 until then).
// UNKNOWN only while recovery cannot tell. Records are immutable snapshots; the manager persists
// each change before it publishes it.
struct Container {
  enum class State { kCreated = 0, kRunning = 1, kExited = 2, kUnknown = 3 };
  std::string id;
  std::string sandbox_id;
  ContainerSpec spec;
  State state = State::kCreated;
  int64_t created_at_ns = 0, started_at_ns = 0, finished_at_ns = 0;
  int32_t exit_code = 0;
  std::string reason;   // Completed, Error, OOMKilled, ContainerCannotRun
  std::string message;
  pid_t pid = 0;
  pid_t monitor_pid = 0;
  std::string image_id;   // sha256:...
  std::string image_ref;  // a repo digest when known, else the id
  std::string image_name; // the repo tag the request resolved to, if any
  std::vector<std::string> chain_ids;  // the image layers the root filesystem is made of
  std::string log_path;   // absolute
  std::string stop_signal;  // from the image config; "" = SIGTERM
  std::string runtime_handler;
  // The OCI spec is not kept here: it is the bundle's config.json (ContainerManager::OciSpec),
  // 10 KiB and more with the RuntimeDefault seccomp profile, which would be held in memory and
  // rewritten to the database at every state change, for every container, to serve only exec
  // and verbose status. (Records of older versions carry it; it is ignored.)
  // The process's user as the spec resolved it (ContainerStatus reports it, often: kept here
  // rather than read out of the spec each time).
  int64_t uid = 0, gid = 0;
  std::vector<int64_t> supplemental_groups;
  // kubelet's key for the name: name_sandboxname_namespace_uid_attempt.
  std::string Key(const Sandbox& sandbox) const;
  // Whether the runtime has made it (StartContainer, CreateInRuntime, recorded its process).
  bool InRuntime() const { return pid != 0; }
};
using ContainerPtr = std::shared_ptr<const Container>;

std::string ContainerToJson(const Container& container);
absl::StatusOr<Container> ContainerFromJson(const std::string& json);

}  // namespace berth::pod
