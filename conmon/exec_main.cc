// berth-exec: starts a process in a running container the way `runc exec --detach` does, without
// the OCI runtime. berthd runs it for ExecSync (kubelet's exec probes, the most frequent fork on a
// node): a small single-threaded C++ program instead of two Go start-ups, and a cgroup join that
// does not wait for an RCU grace period (a process moving itself by writing 0 to a v1 `tasks`
// file skips the kernel's global threadgroup lock; on the unified hierarchy the process is cloned
// into its cgroup), so a probe costs a few milliseconds instead of runc's 15-20.
//
//   berth-exec --log FILE --pid-file FILE --process PROCESS_JSON --config CONFIG_JSON
//              --container-id ID --pid INIT_PID
//
// It joins the namespaces and cgroups of the container's process INIT_PID (checked to be the
// container's: its cgroup is named after ID, and it is held by a pidfd while namespaces are
// joined), then forks the process, which sets itself up as runc's setns init does (session
// keyring, rlimits, no_new_privs, seccomp from CONFIG_JSON's linux.seccomp, bounding set, user and
// groups, working directory, capabilities, AppArmor/SELinux exec labels) and execs the OCI process
// object PROCESS_JSON. Exit 0 once the process runs: its pid is in the pid file and it is left to
// berthd, the child subreaper. Otherwise exit 1 with the reason as a JSON error record in the log,
// as runc writes it. Stdin, stdout and stderr pass on to the process.

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace {

using json = nlohmann::json;

struct Failure {
  std::string message;
};

// strerror as runc words it ("no such file or directory").
std::string ErrorText(int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

[[noreturn]] void Fail(const std::string& what, int err = 0) {
  throw Failure{err == 0 ? what : what + ": " + ErrorText(err)};
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail("open " + path, errno);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json ParseJson(const std::string& path) {
  json j = json::parse(ReadAll(path), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) Fail(path + " is not a JSON object");
  return j;
}

// --- what the process is to be -------------------------------------------------------------

constexpr const char* kCapNames[] = {"CAP_CHOWN",
                                     "CAP_DAC_OVERRIDE",
                                     "CAP_DAC_READ_SEARCH",
                                     "CAP_FOWNER",
                                     "CAP_FSETID",
                                     "CAP_KILL",
                                     "CAP_SETGID",
                                     "CAP_SETUID",
                                     "CAP_SETPCAP",
                                     "CAP_LINUX_IMMUTABLE",
                                     "CAP_NET_BIND_SERVICE",
                                     "CAP_NET_BROADCAST",
                                     "CAP_NET_ADMIN",
                                     "CAP_NET_RAW",
                                     "CAP_IPC_LOCK",
                                     "CAP_IPC_OWNER",
                                     "CAP_SYS_MODULE",
                                     "CAP_SYS_RAWIO",
                                     "CAP_SYS_CHROOT",
                                     "CAP_SYS_PTRACE",
                                     "CAP_SYS_PACCT",
                                     "CAP_SYS_ADMIN",
                                     "CAP_SYS_BOOT",
                                     "CAP_SYS_NICE",
                                     "CAP_SYS_RESOURCE",
                                     "CAP_SYS_TIME",
                                     "CAP_SYS_TTY_CONFIG",
                                     "CAP_MKNOD",
                                     "CAP_LEASE",
                                     "CAP_AUDIT_WRITE",
                                     "CAP_AUDIT_CONTROL",
                                     "CAP_SETFCAP",
                                     "CAP_MAC_OVERRIDE",
                                     "CAP_MAC_ADMIN",
                                     "CAP_SYSLOG",
                                     "CAP_WAKE_ALARM",
                                     "CAP_BLOCK_SUSPEND",
                                     "CAP_AUDIT_READ",
                                     "CAP_PERFMON",
                                     "CAP_BPF",
                                     "CAP_CHECKPOINT_RESTORE"};
constexpr int kCapCount = sizeof kCapNames / sizeof kCapNames[0];

// A capability list as a bit set; names this program does not know are left out, as runc does.
uint64_t CapSet(const json& process, const char* which) {
  uint64_t set = 0;
  const json* caps = process.contains("capabilities") ? &process["capabilities"] : nullptr;
  if (caps == nullptr || !caps->is_object() || !caps->contains(which)) return 0;
  const json& list = (*caps)[which];
  if (!list.is_array()) Fail(std::string("capabilities.") + which + " is not a list");
  for (const json& name : list) {
    if (!name.is_string()) Fail(std::string("capabilities.") + which + " holds a non-string");
    for (int i = 0; i < kCapCount; ++i) {
      if (name.get<std::string>() == kCapNames[i]) set |= uint64_t{1} << i;
    }
  }
  return set;
}

int RlimitResource(const std::string& name) {
  static const std::map<std::string, int> kNames = {
      {"RLIMIT_CPU", RLIMIT_CPU},           {"RLIMIT_FSIZE", RLIMIT_FSIZE},
      {"RLIMIT_DATA", RLIMIT_DATA},         {"RLIMIT_STACK", RLIMIT_STACK},
      {"RLIMIT_CORE", RLIMIT_CORE},         {"RLIMIT_RSS", RLIMIT_RSS},
      {"RLIMIT_NPROC", RLIMIT_NPROC},       {"RLIMIT_NOFILE", RLIMIT_NOFILE},
      {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},   {"RLIMIT_AS", RLIMIT_AS},
      {"RLIMIT_LOCKS", RLIMIT_LOCKS},       {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
      {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
      {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},     {"RLIMIT_RTTIME", RLIMIT_RTTIME}};
  auto it = kNames.find(name);
  if (it == kNames.end()) Fail("unknown rlimit " + name);
  return it->second;
}

struct Rlimit {
  int resource;
  rlimit value;
};

struct Process {
  std::vector<std::string> args, env;
  std::string cwd = "/";
  uint32_t uid = 0, gid = 0;
  std::vector<gid_t> groups;
  bool has_umask = false;
  mode_t umask = 022;
  bool no_new_privileges = false;
  uint64_t bounding = 0, effective = 0, inheritable = 0, permitted = 0, ambient = 0;
  std::vector<Rlimit> rlimits;
  std::string apparmor, selinux;
};

std::vector<std::string> Strings(const json& p, const char* key) {
  std::vector<std::string> out;
  if (!p.contains(key)) return out;
  if (!p[key].is_array()) Fail(std::string("process.") + key + " is not a list");
  for (const json& s : p[key]) {
    if (!s.is_string()) Fail(std::string("process.") + key + " holds a non-string");
    out.push_back(s.get<std::string>());
  }
  return out;
}

Process ReadProcess(const std::string& path) {
  const json p = ParseJson(path);
  Process out;
  out.args = Strings(p, "args");
  if (out.args.empty() || out.args[0].empty()) Fail("process.args is empty");
  out.env = Strings(p, "env");
  if (p.contains("cwd")) {
    if (!p["cwd"].is_string() || p["cwd"].get<std::string>().empty() ||
        p["cwd"].get<std::string>()[0] != '/') {
      Fail("process.cwd is not an absolute path");
    }
    out.cwd = p["cwd"].get<std::string>();
  }
  if (p.contains("user")) {
    const json& u = p["user"];
    if (!u.is_object()) Fail("process.user is not an object");
    if (u.contains("uid")) out.uid = u["uid"].get<uint32_t>();
    if (u.contains("gid")) out.gid = u["gid"].get<uint32_t>();
    if (u.contains("additionalGids")) {
      for (const json& g : u["additionalGids"]) out.groups.push_back(g.get<uint32_t>());
    }
    if (u.contains("umask")) {
      out.has_umask = true;
      out.umask = static_cast<mode_t>(u["umask"].get<uint32_t>() & 07777);
    }
  }
  out.no_new_privileges = p.value("noNewPrivileges", false);
  out.bounding = CapSet(p, "bounding");
  out.effective = CapSet(p, "effective");
  out.inheritable = CapSet(p, "inheritable");
  out.permitted = CapSet(p, "permitted");
  out.ambient = CapSet(p, "ambient");
  if (p.contains("rlimits")) {
    for (const json& r : p["rlimits"]) {
      out.rlimits.push_back({RlimitResource(r.at("type").get<std::string>()),
                             {r.at("soft").get<rlim_t>(), r.at("hard").get<rlim_t>()}});
    }
  }
  if (p.contains("apparmorProfile")) out.apparmor = p["apparmorProfile"].get<std::string>();
  if (p.contains("selinuxLabel")) out.selinux = p["selinuxLabel"].get<std::string>();
  return out;
}

// --- seccomp: the OCI linux.seccomp object, compiled with libseccomp as runc does ------------

uint32_t SeccompAction(const std::string& action, const json& errno_ret) {
  const uint32_t err = errno_ret.is_number_unsigned() ? errno_ret.get<uint32_t>() : EPERM;
  if (action == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (action == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(err);
  if (action == "SCMP_ACT_KILL" || action == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (action == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (action == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (action == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(err);
  if (action == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  // SCMP_ACT_NOTIFY needs a listener berth does not run: berthd never sends such a profile here.
  Fail("seccomp action " + action + " is not supported");
}

scmp_compare SeccompOp(const std::string& op) {
  static const std::map<std::string, scmp_compare> kOps = {
      {"SCMP_CMP_NE", SCMP_CMP_NE},
      {"SCMP_CMP_LT", SCMP_CMP_LT},
      {"SCMP_CMP_LE", SCMP_CMP_LE},
      {"SCMP_CMP_EQ", SCMP_CMP_EQ},
      {"SCMP_CMP_GE", SCMP_CMP_GE},
      {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
  auto it = kOps.find(op);
  if (it == kOps.end()) Fail("seccomp operator " + op + " is not supported");
  return it->second;
}

struct SeccompFilter {
  scmp_filter_ctx ctx = nullptr;
  ~SeccompFilter() {
    if (ctx != nullptr) seccomp_release(ctx);
  }
};

void CompileSeccomp(const json& s, SeccompFilter& filter) {
  if (!s.is_object()) Fail("linux.seccomp is not an object");
  const uint32_t default_action =
      SeccompAction(s.value("defaultAction", std::string("")), s.value("defaultErrnoRet", json()));
  filter.ctx = seccomp_init(default_action);
  if (filter.ctx == nullptr) Fail("seccomp_init failed");
  // The process sets no_new_privs itself when its spec asks for it, as runc does.
  seccomp_attr_set(filter.ctx, SCMP_FLTATR_CTL_NNP, 0);
  for (const json& flag : s.value("flags", json::array())) {
    if (flag == "SECCOMP_FILTER_FLAG_LOG") seccomp_attr_set(filter.ctx, SCMP_FLTATR_CTL_LOG, 1);
    if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") {
      seccomp_attr_set(filter.ctx, SCMP_FLTATR_CTL_SSB, 1);
    }
  }
  for (const json& arch : s.value("architectures", json::array())) {
    std::string name = arch.get<std::string>();
    if (name.rfind("SCMP_ARCH_", 0) == 0) name = name.substr(10);
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const uint32_t token = seccomp_arch_resolve_name(name.c_str());
    if (token == 0) Fail("seccomp architecture " + arch.get<std::string>() + " is unknown");
    const int rc = seccomp_arch_add(filter.ctx, token);
    if (rc != 0 && rc != -EEXIST) Fail("seccomp architecture " + name, -rc);
  }
  for (const json& rule : s.value("syscalls", json::array())) {
    const uint32_t action =
        SeccompAction(rule.value("action", std::string("")), rule.value("errnoRet", json()));
    if (action == default_action) continue;  // libseccomp refuses a rule that changes nothing
    std::vector<scmp_arg_cmp> conditions;
    std::set<unsigned> indexes;
    bool repeated = false;
    for (const json& a : rule.value("args", json::array())) {
      const unsigned index = a.at("index").get<unsigned>();
      if (index > 5) Fail("seccomp argument index " + std::to_string(index) + " is past 5");
      repeated |= !indexes.insert(index).second;
      conditions.push_back({index, SeccompOp(a.at("op").get<std::string>()),
                            a.value("value", uint64_t{0}), a.value("valueTwo", uint64_t{0})});
    }
    for (const json& name : rule.value("names", json::array())) {
      const int nr = seccomp_syscall_resolve_name(name.get<std::string>().c_str());
      if (nr == __NR_SCMP_ERROR) continue;  // not a system call of this architecture
      int rc = 0;
      if (!repeated) {
        rc = seccomp_rule_add_array(filter.ctx, action, nr,
                                    static_cast<unsigned>(conditions.size()), conditions.data());
      } else {
        // Conditions on one argument cannot be ANDed in a rule: each is a rule of its own
        // (runc's reading of such a profile).
        for (const scmp_arg_cmp& c : conditions) {
          rc = seccomp_rule_add_array(filter.ctx, action, nr, 1, &c);
          if (rc != 0) break;
        }
      }
      if (rc != 0) Fail("seccomp rule for " + name.get<std::string>(), -rc);
    }
  }
}

// --- the container's process, namespaces and cgroups ----------------------------------------

// The cgroup hierarchies mounted here: v1 by their controllers ("cpu,cpuacct", "name=systemd"),
// the unified one as "". Mount point and the mount's root within the hierarchy.
struct Hierarchy {
  std::string mount_point, root;
};

std::map<std::string, Hierarchy> CgroupMounts() {
  std::map<std::string, Hierarchy> out;
  std::istringstream lines(ReadAll("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::vector<std::string> fields;
    for (std::string w; f >> w;) fields.push_back(w);
    size_t dash = 0;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (dash + 3 >= fields.size() || fields.size() < 5) continue;
    const std::string& type = fields[dash + 1];
    if (type != "cgroup" && type != "cgroup2") continue;
    std::string key;
    if (type == "cgroup") {
      // The super options name the controllers: "rw,cpu,cpuacct" -> "cpu,cpuacct".
      std::istringstream opts(fields[dash + 3]);
      std::set<std::string> controllers;
      for (std::string o; std::getline(opts, o, ',');) {
        if (o == "rw" || o == "ro" || o.find('=') != std::string::npos) {
          if (o.rfind("name=", 0) == 0) controllers.insert(o);
          continue;
        }
        if (o == "noprefix" || o == "xattr" || o == "clone_children" || o == "favordynmods" ||
            o == "cpuset_v2_mode") {
          continue;
        }
        controllers.insert(o);
      }
      for (const std::string& c : controllers) key += (key.empty() ? "" : ",") + c;
    }
    out.emplace(key, Hierarchy{fields[4], fields[3]});
  }
  return out;
}

// The process's cgroup path per hierarchy, keyed as CgroupMounts keys them.
std::map<std::string, std::string> ProcessCgroups(pid_t pid) {
  std::map<std::string, std::string> out;
  std::istringstream lines(ReadAll("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string line;
  while (std::getline(lines, line)) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    // /proc/PID/cgroup lists controllers in the kernel's order; key them sorted.
    std::istringstream in(controllers);
    std::set<std::string> sorted;
    for (std::string c; std::getline(in, c, ',');) sorted.insert(c);
    std::string key;
    for (const std::string& c : sorted) key += (key.empty() ? "" : ",") + c;
    out[key] = line.substr(b + 1);
  }
  return out;
}

bool Alive(int pidfd) { return ::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0; }

int NamespaceFlags(pid_t pid) {
  static const std::pair<const char*, int> kKinds[] = {
      {"ipc", CLONE_NEWIPC},   {"uts", CLONE_NEWUTS},  {"net", CLONE_NEWNET},
      {"pid", CLONE_NEWPID},   {"mnt", CLONE_NEWNS},   {"cgroup", CLONE_NEWCGROUP},
      {"user", CLONE_NEWUSER}, {"time", CLONE_NEWTIME}};
  int flags = 0;
  for (const auto& [name, flag] : kKinds) {
    struct stat theirs {
    }, ours{};
    if (::stat((std::string("/proc/self/ns/") + name).c_str(), &ours) != 0) {
      continue;  // a kernel without this kind
    }
    // A process that has exited (a zombie) has no namespaces left to join.
    const std::string path = "/proc/" + std::to_string(pid) + "/ns/" + name;
    if (::stat(path.c_str(), &theirs) != 0) {
      Fail("container process " + std::to_string(pid) + " is gone", errno);
    }
    if (theirs.st_ino != ours.st_ino || theirs.st_dev != ours.st_dev) flags |= flag;
  }
  if (flags & CLONE_NEWUSER)
    Fail("the container has a user namespace, which berth-exec does not join");
  // A container always has a mount namespace of its own: never run a command in the host's.
  if (!(flags & CLONE_NEWNS))
    Fail("process " + std::to_string(pid) + " shares the host's mount namespace");
  return flags;
}

// --- in the new process, before exec ---------------------------------------------------------

// What the child reports through its close-on-exec pipe when it cannot exec: nothing when it did.
[[noreturn]] void ChildFail(int report, const std::string& what, int err) {
  const std::string m = err == 0 ? what : what + ": " + ErrorText(err);
  (void)!::write(report, m.data(), m.size());
  ::_exit(127);
}

std::string EnvValue(const std::vector<std::string>& env, const std::string& key) {
  for (const std::string& e : env) {
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 && e[key.size()] == '=') {
      return e.substr(key.size() + 1);
    }
  }
  return "";
}

bool HasEnv(const std::vector<std::string>& env, const std::string& key) {
  for (const std::string& e : env) {
    if (e.compare(0, key.size() + 1, key + "=") == 0) return true;
  }
  return false;
}

// The user's home in the container's /etc/passwd ("/" if it has none), for a HOME the process
// spec does not set: runc's rule.
std::string HomeOf(uint32_t uid) {
  // The image's file: only a regular one (a FIFO there must not hang the exec), and only so much.
  const int fd = ::open("/etc/passwd", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return "/";
  struct stat st {};
  std::string text;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    char buf[8192];
    for (ssize_t n; text.size() < (1 << 20) && (n = ::read(fd, buf, sizeof buf)) > 0;) {
      text.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::istringstream s(line);
    for (std::string field; std::getline(s, field, ':');) f.push_back(field);
    if (f.size() >= 6 && f[2] == std::to_string(uid) && !f[5].empty()) return f[5];
  }
  return "/";
}

// stdin, stdout and stderr owned by the user the process becomes, so that it can reopen them
// (/dev/stdout) as runc arranges; /dev/null and what is not ours to change are left alone.
void FixStdioOwner(uint32_t uid, uint32_t gid) {
  struct stat null {};
  const bool have_null = ::stat("/dev/null", &null) == 0;
  for (int fd = 0; fd < 3; ++fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) continue;
    if (have_null && S_ISCHR(st.st_mode) && st.st_rdev == null.st_rdev) continue;
    if (st.st_uid == uid && st.st_gid == gid) continue;
    (void)::fchown(fd, uid, gid);
  }
}

bool WriteAttr(const std::string& path, const std::string& value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  ::close(fd);
  return ok;
}

// What the process's setup needs to know of the host, read before the container's mount
// namespace hides it.
struct Host {
  int last_cap = CAP_LAST_CAP;
  bool selinux = false;
  bool apparmor = false;
};

bool FileSays(const char* path, char first) {
  std::ifstream in(path);
  char c = 0;
  return in.get(c) && c == first;
}

[[noreturn]] void BecomeProcess(const Process& p, const Host& host, SeccompFilter& seccomp,
                                const std::string& id, int report) {
  for (const Rlimit& r : p.rlimits) {
    if (::setrlimit(static_cast<__rlimit_resource>(r.resource), &r.value) != 0) {
      ChildFail(report, "setrlimit", errno);
    }
  }
  // A session keyring of the container's own, not berthd's.
  const std::string ring = "_ses." + id;
  if (::syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, ring.c_str()) < 0 && errno != ENOSYS) {
    ChildFail(report, "join session keyring", errno);
  }
  if (p.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    ChildFail(report, "no_new_privs", errno);
  }
  if (!p.selinux.empty() && host.selinux && !WriteAttr("/proc/thread-self/attr/exec", p.selinux)) {
    ChildFail(report, "set SELinux exec label", errno);
  }
  // Without no_new_privs loading a filter takes CAP_SYS_ADMIN: before the capabilities go.
  // With it, as late as possible.
  if (seccomp.ctx != nullptr && !p.no_new_privileges) {
    const int rc = seccomp_load(seccomp.ctx);
    if (rc != 0) ChildFail(report, "load seccomp filter", -rc);
  }
  // The working directory as root first (a directory only the container's user can enter is
  // retried as that user).
  bool chdir_later = false;
  if (::chdir(p.cwd.c_str()) != 0) {
    if (errno != EACCES && errno != EPERM) ChildFail(report, "chdir to cwd (" + p.cwd + ")", errno);
    chdir_later = true;
  }
  for (int c = 0; c <= host.last_cap; ++c) {
    if (c < 64 && (p.bounding & (uint64_t{1} << c))) continue;
    if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) {
      ChildFail(report, "drop capability from the bounding set", errno);
    }
  }
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) ChildFail(report, "keep capabilities", errno);
  FixStdioOwner(p.uid, p.gid);
  if (::setgroups(p.groups.size(), p.groups.data()) != 0) ChildFail(report, "setgroups", errno);
  if (::setresgid(p.gid, p.gid, p.gid) != 0) ChildFail(report, "setgid", errno);
  if (::setresuid(p.uid, p.uid, p.uid) != 0) ChildFail(report, "setuid", errno);
  if (chdir_later && ::chdir(p.cwd.c_str()) != 0) {
    ChildFail(report, "chdir to cwd (" + p.cwd + ")", errno);
  }
  if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0)
    ChildFail(report, "clear keep capabilities", errno);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; ++i) {
    data[i].effective = static_cast<uint32_t>(p.effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(p.permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(p.inheritable >> (32 * i));
  }
  if (::syscall(SYS_capset, &header, data) != 0) ChildFail(report, "capset", errno);
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    ChildFail(report, "clear ambient capabilities", errno);
  }
  // An ambient capability the process cannot have (not in its permitted and inheritable sets) is
  // left out: runc warns and goes on.
  for (int c = 0; c < kCapCount; ++c) {
    if (p.ambient & (uint64_t{1} << c)) ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
  }
  if (!p.apparmor.empty() && host.apparmor &&
      !WriteAttr("/proc/thread-self/attr/apparmor/exec", "exec " + p.apparmor) &&
      !WriteAttr("/proc/thread-self/attr/exec", "exec " + p.apparmor)) {
    ChildFail(report, "set AppArmor profile " + p.apparmor, errno);
  }
  if (p.has_umask) ::umask(p.umask);
  std::vector<std::string> env = p.env;
  if (!HasEnv(env, "HOME")) env.push_back("HOME=" + HomeOf(p.uid));
  std::vector<char*> argv, envp;
  for (const std::string& a : p.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  // Candidates first: after the filter is in, as few system calls as possible.
  std::vector<std::string> candidates;
  if (p.args[0].find('/') != std::string::npos) {
    candidates.push_back(p.args[0]);
  } else {
    std::istringstream dirs(EnvValue(p.env, "PATH"));
    for (std::string dir; std::getline(dirs, dir, ':');) {
      candidates.push_back((dir.empty() ? "." : dir) + "/" + p.args[0]);
    }
  }
  // Nothing of ours reaches the process but its stdio (and this pipe, until exec).
  if (::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    ChildFail(report, "close_range", errno);
  }
  if (seccomp.ctx != nullptr && p.no_new_privileges) {
    const int rc = seccomp_load(seccomp.ctx);
    if (rc != 0) ChildFail(report, "load seccomp filter", -rc);
  }
  int denied = 0;
  for (const std::string& path : candidates) {
    ::execve(path.c_str(), argv.data(), envp.data());
    if (errno == EACCES) {
      denied = EACCES;
    } else if (errno != ENOENT && errno != ENOTDIR) {
      ChildFail(report, "exec: \"" + p.args[0] + "\"", errno);
    }
  }
  if (p.args[0].find('/') != std::string::npos || denied != 0) {
    ChildFail(report, "exec: \"" + p.args[0] + "\"", denied != 0 ? denied : ENOENT);
  }
  ChildFail(report, "exec: \"" + p.args[0] + "\": executable file not found in $PATH", 0);
}

struct Options {
  std::string log, pid_file, process, config, id;
  pid_t pid = 0;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) Fail("usage: " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--log")
      o.log = v;
    else if (a == "--pid-file")
      o.pid_file = v;
    else if (a == "--process")
      o.process = v;
    else if (a == "--config")
      o.config = v;
    else if (a == "--container-id")
      o.id = v;
    else if (a == "--pid")
      o.pid = static_cast<pid_t>(std::stol(v));
    else
      Fail("unknown option " + a);
  }
  if (o.pid_file.empty() || o.process.empty() || o.config.empty() || o.id.empty() || o.pid <= 0) {
    Fail(
        "usage: berth-exec --log FILE --pid-file FILE --process JSON --config JSON "
        "--container-id ID --pid PID");
  }
  return o;
}

// The log, opened first: once in the container's mount namespace its path is not ours.
int log_fd = -1;

void LogError(const std::string& message) {
  const std::string line = json{{"level", "error"}, {"msg", message}}.dump() + "\n";
  if (log_fd >= 0) (void)!::write(log_fd, line.data(), line.size());
  std::fputs(message.c_str(), stderr);
  std::fputc('\n', stderr);
}

int Run(const Options& o) {
  // Until the exec, nothing of the container may look into this process (/proc/PID/exe is a host
  // binary): not dumpable, as runc's init.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) Fail("prctl(PR_SET_DUMPABLE)", errno);
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, o.pid, 0));
  if (pidfd < 0) Fail("container process " + std::to_string(o.pid) + " is gone", errno);

  const Process process = ReadProcess(o.process);
  const json config = ParseJson(o.config);
  SeccompFilter seccomp;
  if (config.contains("linux") && config["linux"].is_object() &&
      config["linux"].contains("seccomp") && !config["linux"]["seccomp"].is_null()) {
    CompileSeccomp(config["linux"]["seccomp"], seccomp);
  }

  // The process must be the container's: a pid reused by another process would put the command
  // in that one's namespaces. Its cgroup carries the container's id; the pidfd, still alive once
  // everything is read, shows the pid was not reused meanwhile.
  const std::map<std::string, std::string> cgroups = ProcessCgroups(o.pid);
  bool named = false;
  for (const auto& [key, path] : cgroups) {
    const std::string leaf = path.substr(path.rfind('/') + 1);
    named |= leaf.find(o.id) != std::string::npos;
  }
  if (!named) Fail("container process " + std::to_string(o.pid) + " is gone");
  const int ns_flags = NamespaceFlags(o.pid);
  if (!Alive(pidfd)) Fail("container process " + std::to_string(o.pid) + " is gone");

  // Its cgroups: v1 ones by writing 0 to their tasks files (this process is single-threaded, so
  // the kernel moves it without the global lock that costs a grace period); the unified one at
  // the clone below.
  const std::map<std::string, Hierarchy> mounts = CgroupMounts();
  int unified = -1;
  for (const auto& [key, path] : cgroups) {
    auto m = mounts.find(key);
    if (m == mounts.end()) continue;  // not mounted here (the empty unified line of a v1 host)
    std::string rel = path;
    if (m->second.root != "/") {
      if (rel.compare(0, m->second.root.size(), m->second.root) != 0) continue;
      rel = rel.substr(m->second.root.size());
    }
    const std::string dir = m->second.mount_point + rel;
    if (key.empty()) {
      unified = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (unified < 0) Fail("open cgroup " + dir, errno);
      continue;
    }
    const int tasks = ::open((dir + "/tasks").c_str(), O_WRONLY | O_CLOEXEC);
    if (tasks < 0 || ::write(tasks, "0", 1) != 1) Fail("join cgroup " + dir, errno);
    ::close(tasks);
  }

  Host host;
  {
    std::ifstream in("/proc/sys/kernel/cap_last_cap");
    in >> host.last_cap;
  }
  host.selinux = ::access("/sys/fs/selinux/enforce", F_OK) == 0;
  host.apparmor = FileSays("/sys/module/apparmor/parameters/enabled", 'Y');
  // Past the setns, paths are the container's: the pid file is opened here.
  const int pid_file = ::open(o.pid_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (pid_file < 0) Fail("open " + o.pid_file, errno);
  if (ns_flags != 0 && ::setns(pidfd, ns_flags) != 0)
    Fail("join the container's namespaces", errno);

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) Fail("pipe", errno);
  clone_args args{};
  args.exit_signal = SIGCHLD;
  if (unified >= 0) {
    args.flags = CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(unified);
  }
  long child = ::syscall(SYS_clone3, &args, sizeof args);
  if (child < 0 && errno == ENOSYS) {
    // No clone3 (an old kernel, or a seccomp profile that hides it): into the unified cgroup the
    // slow way, by moving this process, then a plain fork.
    if (unified >= 0) {
      const int procs = ::openat(unified, "cgroup.procs", O_WRONLY | O_CLOEXEC);
      if (procs < 0 || ::write(procs, "0", 1) != 1) Fail("join the unified cgroup", errno);
      ::close(procs);
    }
    child = ::fork();
  }
  if (child < 0) Fail("start the process in the container", errno);
  if (child == 0) {
    ::close(report[0]);
    try {
      BecomeProcess(process, host, seccomp, o.id, report[1]);
    } catch (const Failure& f) {
      ChildFail(report[1], f.message, 0);
    }
  }
  ::close(report[1]);
  std::string failure;
  char buf[4096];
  for (ssize_t n; (n = ::read(report[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    failure.append(buf, static_cast<size_t>(n));
  }
  if (!failure.empty()) {
    int status = 0;
    ::waitpid(static_cast<pid_t>(child), &status, 0);
    Fail(failure);
  }
  // Read by berthd once this program has exited: no need for a rename (which would need a path).
  const std::string pid_text = std::to_string(child);
  if (::write(pid_file, pid_text.data(), pid_text.size()) !=
      static_cast<ssize_t>(pid_text.size())) {
    Fail("write " + o.pid_file, errno);
  }
  return 0;
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer's exit check starts a tracer process, which past the setns would be born in the
// container's pid namespace and could never find this one: it would hang the exit.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

int main(int argc, char** argv) {
  Options o;
  try {
    o = ParseArgs(argc, argv);
    if (!o.log.empty()) {
      log_fd = ::open(o.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    return Run(o);
  } catch (const Failure& f) {
    LogError(f.message);
  } catch (const std::exception& e) {
    LogError(std::string("bad input: ") + e.what());
  }
  return 1;
}
