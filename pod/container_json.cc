// Containers as JSON: how they are persisted in berth.db.

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pod/container.h"

// std::optional as null-or-value, for the macros below.
namespace nlohmann {
template <typename T>
struct adl_serializer<std::optional<T>> {
  static void to_json(json& j, const std::optional<T>& v) {
    if (v) {
      j = *v;
    } else {
      j = nullptr;
    }
  }
  static void from_json(const json& j, std::optional<T>& v) {
    if (j.is_null()) {
      v.reset();
    } else {
      v = j.get<T>();
    }
  }
};
}  // namespace nlohmann

namespace berth::pod {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(MountSpec, container_path, host_path, readonly,
                                                recursive_readonly, propagation)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DeviceSpec, container_path, host_path, permissions)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SecuritySpec, add_capabilities, drop_capabilities,
                                                add_ambient_capabilities, privileged,
                                                readonly_rootfs, no_new_privs, run_as_user,
                                                run_as_username, run_as_group, supplemental_groups,
                                                strict_supplemental_groups, seccomp,
                                                seccomp_localhost, apparmor, apparmor_localhost,
                                                masked_paths, readonly_paths, pid_mode, target_id)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ContainerSpec, name, attempt, image, command, args,
                                                working_dir, envs, mounts, devices, labels,
                                                annotations, log_path, stdin, stdin_once, tty,
                                                resources, security)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Container, id, sandbox_id, spec, state,
                                                created_at_ns, started_at_ns, finished_at_ns,
                                                exit_code, reason, message, pid, monitor_pid,
                                                image_id, image_ref, image_name, chain_ids,
                                                log_path, stop_signal, runtime_handler,
                                                uid, gid, supplemental_groups)

std::string Container::Key(const Sandbox& sandbox) const {
  return absl::StrCat(spec.name, "_", sandbox.spec.name, "_", sandbox.spec.namespace_name, "_",
                      sandbox.spec.uid, "_", spec.attempt);
}

std::string ContainerToJson(const Container& container) { return nlohmann::json(container).dump(); }

absl::StatusOr<Container> ContainerFromJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return absl::InternalError("container record is not valid JSON");
  try {
    return j.get<Container>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(absl::StrCat("container record: ", e.what()));
  }
}

}  // namespace berth::pod
