#include "pod/container_spec.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "pod/oci_spec.h"
#include "pod/request_limits.h"
#include "pod/resources.h"
#include "pod/seccomp.h"
#include "pod/user.h"

namespace berth::pod {
namespace {

using nlohmann::json;

constexpr char kDefaultPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const std::vector<std::string>& AllCapabilities() {
  static const std::vector<std::string> kAll = {
      "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
      "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
      "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
      "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
      "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
      "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
      "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
      "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
      "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"};
  return kAll;
}

// "net_admin" / "NET_ADMIN" / "CAP_NET_ADMIN" -> "CAP_NET_ADMIN"; "ALL" stays.
absl::StatusOr<std::string> CapName(const std::string& name) {
  std::string upper = absl::AsciiStrToUpper(name);
  if (upper == "ALL") return upper;
  if (!absl::StartsWith(upper, "CAP_")) upper = "CAP_" + upper;
  const auto& all = AllCapabilities();
  if (std::find(all.begin(), all.end(), upper) == all.end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown capability \"", name, "\""));
  }
  return upper;
}

// The capabilities berthd itself may hand out (its bounding set): a sandboxed or restricted node
// has fewer than the kernel knows, and runc fails on any it cannot apply. containerd does the same.
const std::vector<std::string>& HostCapabilities() {
  static const std::vector<std::string> kHost = [] {
    std::ifstream in("/proc/self/status");
    std::string key;
    uint64_t bounding = ~uint64_t{0};
    while (in >> key) {
      if (key == "CapBnd:") {
        std::string hex;
        in >> hex;
        bounding = std::stoull(hex, nullptr, 16);
        break;
      }
    }
    std::vector<std::string> out;
    const std::vector<std::string>& all = AllCapabilities();  // in kernel order
    for (size_t i = 0; i < all.size(); ++i) {
      if (bounding & (uint64_t{1} << i)) out.push_back(all[i]);
    }
    return out;
  }();
  return kHost;
}

std::vector<std::string> OnlyHostCapabilities(std::vector<std::string> caps) {
  const std::vector<std::string>& host = HostCapabilities();
  caps.erase(std::remove_if(caps.begin(), caps.end(),
                            [&](const std::string& c) {
                              return std::find(host.begin(), host.end(), c) == host.end();
                            }),
             caps.end());
  return caps;
}

absl::StatusOr<std::vector<std::string>> Capabilities(const SecuritySpec& s) {
  if (s.privileged) return HostCapabilities();
  std::vector<std::string> caps = DefaultCapabilities();
  for (const std::string& d : s.drop_capabilities) {
    ASSIGN_OR_RETURN(std::string name, CapName(d));
    if (name == "ALL") {
      caps.clear();
    } else {
      caps.erase(std::remove(caps.begin(), caps.end(), name), caps.end());
    }
  }
  for (const std::string& a : s.add_capabilities) {
    ASSIGN_OR_RETURN(std::string name, CapName(a));
    if (name == "ALL") {
      caps = AllCapabilities();
      break;
    }
    if (std::find(caps.begin(), caps.end(), name) == caps.end()) caps.push_back(name);
  }
  return OnlyHostCapabilities(std::move(caps));
}

// Kubernetes' rules: command replaces ENTRYPOINT (and then the image's CMD is dropped); args
// replace CMD.
absl::StatusOr<std::vector<std::string>> Args(const ContainerSpec& c,
                                              const image::ImageConfig& image) {
  std::vector<std::string> argv;
  if (!c.command.empty()) {
    argv = c.command;
    argv.insert(argv.end(), c.args.begin(), c.args.end());
  } else {
    argv = image.entrypoint;
    const std::vector<std::string>& cmd = c.args.empty() ? image.cmd : c.args;
    argv.insert(argv.end(), cmd.begin(), cmd.end());
  }
  if (argv.empty()) {
    return absl::InvalidArgumentError(
        "no command: the request has neither command nor args and the image has neither "
        "ENTRYPOINT nor CMD");
  }
  return argv;
}

std::vector<std::string> Env(const ContainerSpec& c, const image::ImageConfig& image,
                             const std::string& hostname) {
  std::vector<std::string> env;
  auto set = [&](const std::string& key, const std::string& value) {
    const std::string prefix = key + "=";
    for (std::string& e : env) {
      if (absl::StartsWith(e, prefix)) {
        e = prefix + value;
        return;
      }
    }
    env.push_back(prefix + value);
  };
  env.push_back(kDefaultPath);
  if (!hostname.empty()) set("HOSTNAME", hostname);
  if (c.tty) set("TERM", "xterm");
  for (const std::string& e : image.env) {
    const size_t eq = e.find('=');
    if (eq != std::string::npos) set(e.substr(0, eq), e.substr(eq + 1));
  }
  for (const auto& [k, v] : c.envs) set(k, v);
  return env;
}

json Mount(const std::string& destination, const std::string& type, const std::string& source,
           std::vector<std::string> options) {
  return {{"destination", destination}, {"type", type}, {"source", source}, {"options", options}};
}

absl::StatusOr<json> CriMount(const MountSpec& m) {
  if (m.container_path.empty() || m.container_path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("mounts: container_path \"", m.container_path,
                                                   "\" is not absolute"));
  }
  if (m.host_path.empty() || m.host_path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("mounts: host_path \"", m.host_path, "\" is not absolute"));
  }
  struct stat st;
  if (::stat(m.host_path.c_str(), &st) != 0) {
    // Like the other runtimes: a missing host directory is created.
    RETURN_IF_ERROR(MakeDirs(m.host_path, 0755));
  }
  std::vector<std::string> options = {"rbind"};
  switch (m.propagation) {
    case Propagation::kPrivate: options.push_back("rprivate"); break;
    case Propagation::kHostToContainer: options.push_back("rslave"); break;
    case Propagation::kBidirectional: options.push_back("rshared"); break;
  }
  if (m.recursive_readonly) {
    if (!m.readonly) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mounts ", m.container_path, ": recursive_read_only needs readonly"));
    }
    if (m.propagation != Propagation::kPrivate) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mounts ", m.container_path, ": recursive_read_only needs private propagation"));
    }
    options.push_back("rro");
  } else {
    options.push_back(m.readonly ? "ro" : "rw");
  }
  return Mount(m.container_path, "bind", m.host_path, options);
}

absl::StatusOr<json> Device(const DeviceSpec& d, json* allow) {
  struct stat st;
  if (::stat(d.host_path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("devices: ", d.host_path, " does not exist"));
  }
  const bool chr = S_ISCHR(st.st_mode);
  if (!chr && !S_ISBLK(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("devices: ", d.host_path, " is not a device"));
  }
  const std::string perms = d.permissions.empty() ? "rwm" : d.permissions;
  if (perms.find_first_not_of("rwm") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("devices ", d.host_path, ": bad permissions \"", d.permissions, "\""));
  }
  const int64_t major = major(st.st_rdev), minor = minor(st.st_rdev);
  allow->push_back({{"allow", true}, {"type", chr ? "c" : "b"}, {"major", major},
                    {"minor", minor}, {"access", perms}});
  return json{{"path", d.container_path.empty() ? d.host_path : d.container_path},
              {"type", chr ? "c" : "b"},
              {"major", major},
              {"minor", minor},
              {"fileMode", st.st_mode & 0777},
              {"uid", 0},
              {"gid", 0}};
}

bool HostHasAppArmor() {
  std::ifstream in("/sys/module/apparmor/parameters/enabled");
  std::string v;
  return (in >> v) && v == "Y";
}

std::string NsPath(pid_t pid, const char* ns) {
  return absl::StrCat("/proc/", pid, "/ns/", ns);
}

absl::StatusOr<json> Namespaces(const ContainerSpecInput& in) {
  const SandboxSpec& pod = in.sandbox->spec;
  const SecuritySpec& sec = in.container->spec.security;
  json ns = json::array({{{"type", "mount"}}});
  if (!pod.host_network) ns.push_back({{"type", "network"}, {"path", in.sandbox->netns_path}});
  if (!pod.host_ipc) ns.push_back({{"type", "ipc"}, {"path", NsPath(in.sandbox_pid, "ipc")}});
  if (!pod.host_network) ns.push_back({{"type", "uts"}, {"path", NsPath(in.sandbox_pid, "uts")}});
  switch (sec.pid_mode) {
    case NamespaceMode::kPod:
      if (pod.pid_mode == NamespaceMode::kNode) break;  // the pod shares the host's
      ns.push_back({{"type", "pid"}, {"path", NsPath(in.sandbox_pid, "pid")}});
      break;
    case NamespaceMode::kContainer: ns.push_back({{"type", "pid"}}); break;
    case NamespaceMode::kNode: break;
    case NamespaceMode::kTarget:
      if (in.target_pid <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "namespace_options.target_id: container \"", sec.target_id, "\" is not running"));
      }
      ns.push_back({{"type", "pid"}, {"path", NsPath(in.target_pid, "pid")}});
      break;
  }
  if (in.cgroups.v2()) ns.push_back({{"type", "cgroup"}});
  return ns;
}

}  // namespace

const std::vector<std::string>& DefaultCapabilities() {
  static const std::vector<std::string> kDefault = {
      "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
      "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"};
  return kDefault;
}

absl::StatusOr<std::string> ContainerOciSpec(const ContainerSpecInput& in) {
  const ContainerSpec& c = in.container->spec;
  const SecuritySpec& sec = c.security;
  const SandboxSpec& pod = in.sandbox->spec;
  if (sec.run_as_group && !sec.run_as_user && sec.run_as_username.empty()) {
    return absl::InvalidArgumentError(
        "security_context.run_as_group is set without run_as_user or run_as_username");
  }
  ASSIGN_OR_RETURN(std::vector<std::string> argv, Args(c, *in.image));
  ASSIGN_OR_RETURN(std::vector<std::string> caps, Capabilities(sec));
  ASSIGN_OR_RETURN(ResolvedUser user,
                   ResolveUser(in.rootfs, sec.run_as_user, sec.run_as_username, sec.run_as_group,
                               in.image->user, sec.supplemental_groups,
                               sec.strict_supplemental_groups));
  json ambient = json::array();
  for (const std::string& a : sec.add_ambient_capabilities) {
    ASSIGN_OR_RETURN(std::string name, CapName(a));
    ambient.push_back(name);
    if (std::find(caps.begin(), caps.end(), name) == caps.end()) caps.push_back(name);
  }
  json process = {
      {"terminal", c.tty},
      {"user", {{"uid", user.uid}, {"gid", user.gid}, {"additionalGids", user.additional_gids}}},
      {"args", argv},
      {"env", Env(c, *in.image, pod.host_network ? "" : pod.hostname)},
      {"cwd", !c.working_dir.empty()           ? c.working_dir
              : !in.image->working_dir.empty() ? in.image->working_dir
                                               : "/"},
      {"capabilities",
       {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", ambient}}},
      {"noNewPrivileges", sec.no_new_privs},
      {"oomScoreAdj", ClampOomScoreAdj(static_cast<int>(c.resources.oom_score_adj))}};
  if (sec.apparmor == "localhost" && !sec.privileged) {
    if (!HostHasAppArmor()) {
      return absl::InvalidArgumentError("apparmor: a Localhost profile was asked for, but this "
                                        "node does not have AppArmor enabled");
    }
    process["apparmorProfile"] = sec.apparmor_localhost;
  } else if ((sec.apparmor.empty() || sec.apparmor == "runtime/default") && !sec.privileged &&
             !in.apparmor_default.empty()) {
    process["apparmorProfile"] = in.apparmor_default;
  }

  // Mounts: the defaults, the pod's files, then the request's (which win on the same path).
  std::set<std::string> requested;
  for (const MountSpec& m : c.mounts) requested.insert(m.container_path);
  json mounts = json::array();
  auto add = [&](json m) {
    if (!requested.contains(m["destination"].get<std::string>())) mounts.push_back(std::move(m));
  };
  add(Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  add(Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  add(Mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  add(Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  add(Mount("/sys", "sysfs", "sysfs",
            {"nosuid", "noexec", "nodev", sec.privileged ? "rw" : "ro"}));
  add(Mount("/sys/fs/cgroup", "cgroup", "cgroup",
            {"nosuid", "noexec", "nodev", "relatime", sec.privileged ? "rw" : "ro"}));
  const std::string etc_mode = sec.readonly_rootfs ? "ro" : "rw";
  for (const char* file : {"hosts", "resolv.conf", "hostname"}) {
    const std::string source = absl::StrCat(in.pod_dir, "/", file);
    if (::access(source.c_str(), F_OK) == 0) {
      add(Mount(absl::StrCat("/etc/", file), "bind", source, {"rbind", "rprivate", etc_mode}));
    }
  }
  if (pod.host_ipc) {
    add(Mount("/dev/shm", "bind", "/dev/shm", {"rbind", "rprivate", "rw"}));
  } else {
    add(Mount("/dev/shm", "bind", in.pod_dir + "/shm", {"rbind", "rprivate", "rw"}));
  }
  // Parents before children: by depth, as kubelet does not order them.
  std::vector<MountSpec> cri_mounts = c.mounts;
  std::stable_sort(cri_mounts.begin(), cri_mounts.end(), [](const MountSpec& a, const MountSpec& b) {
    return std::count(a.container_path.begin(), a.container_path.end(), '/') <
           std::count(b.container_path.begin(), b.container_path.end(), '/');
  });
  std::string rootfs_propagation;
  for (const MountSpec& m : cri_mounts) {
    ASSIGN_OR_RETURN(json mount, CriMount(m));
    mounts.push_back(std::move(mount));
    if (m.propagation == Propagation::kBidirectional) {
      rootfs_propagation = "rshared";
    } else if (m.propagation == Propagation::kHostToContainer && rootfs_propagation.empty()) {
      rootfs_propagation = "rslave";
    }
  }

  json devices = json::array();
  json device_rules = json::array({{{"allow", false}, {"access", "rwm"}}});
  for (const DeviceSpec& d : c.devices) {
    ASSIGN_OR_RETURN(json device, Device(d, &device_rules));
    devices.push_back(std::move(device));
  }
  if (sec.privileged) device_rules = json::array({{{"allow", true}, {"access", "rwm"}}});
  json resources =
      OciResources(c.resources, in.cgroups, absl::StrCat("container ", in.container->id));
  resources["devices"] = device_rules;
  ASSIGN_OR_RETURN(json namespaces, Namespaces(in));

  json linux_section = {{"namespaces", namespaces},
                        {"resources", resources},
                        {"devices", devices}};
  if (!in.cgroups_path.empty()) linux_section["cgroupsPath"] = in.cgroups_path;
  if (!rootfs_propagation.empty()) linux_section["rootfsPropagation"] = rootfs_propagation;
  if (!sec.privileged) {
    linux_section["maskedPaths"] = sec.masked_paths.value_or(DefaultMaskedPaths());
    linux_section["readonlyPaths"] = sec.readonly_paths.value_or(DefaultReadonlyPaths());
    if (sec.seccomp == "runtime/default") {
      linux_section["seccomp"] = json::parse(RuntimeDefaultSeccomp(caps));
    } else if (sec.seccomp == "localhost") {
      ASSIGN_OR_RETURN(std::string profile, LocalhostSeccomp(sec.seccomp_localhost));
      linux_section["seccomp"] = json::parse(profile);
    } else if (!sec.seccomp.empty() && sec.seccomp != "unconfined") {
      return absl::InvalidArgumentError(
          absl::StrCat("seccomp: unknown profile type \"", sec.seccomp, "\""));
    }
  }

  std::map<std::string, std::string> annotations =
      AllowedAnnotations(c.annotations, in.allowed_annotations);
  annotations["io.kubernetes.cri.container-type"] = "container";
  annotations["io.kubernetes.cri.container-name"] = c.name;
  annotations["io.kubernetes.cri.sandbox-id"] = in.sandbox->id;
  annotations["io.kubernetes.cri.sandbox-name"] = pod.name;
  annotations["io.kubernetes.cri.sandbox-namespace"] = pod.namespace_name;
  annotations["io.kubernetes.cri.sandbox-uid"] = pod.uid;
  annotations["io.kubernetes.cri.image-name"] = in.container->image_name;

  json spec = {{"ociVersion", "1.0.2"},
               {"process", process},
               {"root", {{"path", in.rootfs}, {"readonly", sec.readonly_rootfs}}},
               {"mounts", mounts},
               {"annotations", annotations},
               {"linux", linux_section}};
  if (!pod.host_network) spec["hostname"] = pod.hostname;
  return spec.dump(2);
}

absl::StatusOr<std::string> ExecProcessSpec(const std::string& container_oci_spec,
                                            const std::vector<std::string>& args, bool tty) {
  if (args.empty()) return absl::InvalidArgumentError("cmd is empty");
  json spec = json::parse(container_oci_spec, nullptr, false);
  if (!spec.is_object() || !spec.contains("process")) {
    return absl::InternalError("the container's OCI spec is unreadable");
  }
  json process = spec["process"];
  process["args"] = args;
  process["terminal"] = tty;
  process.erase("oomScoreAdj");
  return process.dump();
}

}  // namespace berth::pod
