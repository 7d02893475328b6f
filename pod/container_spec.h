#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "image/manifest.h"
#include "pod/cgroup_support.h"
#include "pod/container.h"
#include "pod/sandbox.h"

namespace berth::pod {

// What a container's OCI spec is made from.
struct ContainerSpecInput {
  const Container* container = nullptr;  // id and the CRI request
  const Sandbox* sandbox = nullptr;
  const image::ImageConfig* image = nullptr;
  std::string rootfs;    // the mounted root filesystem (its /etc/passwd names users)
  std::string pod_dir;   // the sandbox's hostname, resolv.conf, hosts and shm
  pid_t sandbox_pid = 0; // the pause process, whose namespaces the container joins
  pid_t target_pid = 0;  // pid_mode TARGET: a process of the target container
  std::string cgroups_path;
  CgroupSupport cgroups;  // what the container's cgroup can enforce (see ForCgroupParent)
  std::vector<std::string> allowed_annotations;  // the runtime handler's (AllowedAnnotations)
  // The loaded RuntimeDefault AppArmor profile, for a container that asks for RuntimeDefault or
  // for nothing; "" where the host has no AppArmor.
  std::string apparmor_default;
};

// The OCI runtime spec (config.json) of a container, the way kubelet expects it: command and
// args merged with the image's entrypoint and cmd by the Kubernetes rules, the image's env and
// working dir under the request's, the user resolved in the image, the pod's namespaces joined,
// the pod's /etc files and /dev/shm, CRI mounts and devices, the resources this host can enforce
// (OciResources), and the security context (capabilities, privileged, read-only root,
// no_new_privs, seccomp, AppArmor, masked and read-only paths). InvalidArgument naming the
// field for a request that cannot be honoured.
absl::StatusOr<std::string> ContainerOciSpec(const ContainerSpecInput& input);

// The default capability set (containerd's and Docker's), with CAP_ prefixes.
const std::vector<std::string>& DefaultCapabilities();

// The process object for ExecSync / Exec: the container's process (user, env, cwd,
// capabilities, no_new_privs, AppArmor) with `args` and `tty`.
absl::StatusOr<std::string> ExecProcessSpec(const std::string& container_oci_spec,
                                            const std::vector<std::string>& args, bool tty);

}  // namespace berth::pod
