#include "conmon/options.h"

#include <getopt.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

namespace berth::conmon {
namespace {

enum LongOnly {
  kRuntimeArg = 1000,
  kRuntimeOpt,
  kLogSizeMax,
  kLogGlobalSizeMax,
  kExitDir,
  kLeaveStdinOpen,
  kNoSyncLog,
  kExecProcessSpec,
  kSync,
  kNoPivot,
  kNoNewKeyring,
  kFullAttach,
  kApiVersion,
  kSocketDir,
  kVersion,
  kPodMonitor,
  kPodId,
  kPodIdleTimeout,
  kRun,
  kIgnoredWithValue,
  kIgnoredFlag,
};

const option kOptions[] = {
    {"cid", required_argument, nullptr, 'c'},
    {"cuuid", required_argument, nullptr, 'u'},
    {"name", required_argument, nullptr, 'n'},
    {"runtime", required_argument, nullptr, 'r'},
    {"runtime-arg", required_argument, nullptr, kRuntimeArg},
    {"runtime-opt", required_argument, nullptr, kRuntimeOpt},
    {"bundle", required_argument, nullptr, 'b'},
    {"log-path", required_argument, nullptr, 'l'},
    {"log-size-max", required_argument, nullptr, kLogSizeMax},
    {"exit-dir", required_argument, nullptr, kExitDir},
    {"persist-dir", required_argument, nullptr, '0'},
    {"conmon-pidfile", required_argument, nullptr, 'P'},
    {"container-pidfile", required_argument, nullptr, 'p'},
    {"socket-dir-path", required_argument, nullptr, kSocketDir},
    {"terminal", no_argument, nullptr, 't'},
    {"stdin", no_argument, nullptr, 'i'},
    {"leave-stdin-open", no_argument, nullptr, kLeaveStdinOpen},
    {"no-sync-log", no_argument, nullptr, kNoSyncLog},
    {"exec", no_argument, nullptr, 'e'},
    {"exec-process-spec", required_argument, nullptr, kExecProcessSpec},
    {"timeout", required_argument, nullptr, 'T'},
    {"sync", no_argument, nullptr, kSync},
    {"systemd-cgroup", no_argument, nullptr, 's'},
    {"no-pivot", no_argument, nullptr, kNoPivot},
    {"no-new-keyring", no_argument, nullptr, kNoNewKeyring},
    {"full-attach", no_argument, nullptr, kFullAttach},
    {"api-version", required_argument, nullptr, kApiVersion},
    {"version", no_argument, nullptr, kVersion},
    {"pod-monitor", required_argument, nullptr, kPodMonitor},
    {"pod-id", required_argument, nullptr, kPodId},
    {"pod-idle-timeout", required_argument, nullptr, kPodIdleTimeout},
    {"run", no_argument, nullptr, kRun},
    // Accepted for compatibility; they change nothing a CRI client sees.
    {"log-level", required_argument, nullptr, kIgnoredWithValue},
    {"log-tag", required_argument, nullptr, kIgnoredWithValue},
    {"log-global-size-max", required_argument, nullptr, kLogGlobalSizeMax},
    {"exit-delay", required_argument, nullptr, kIgnoredWithValue},
    {"exit-command", required_argument, nullptr, kIgnoredWithValue},
    {"exit-command-arg", required_argument, nullptr, kIgnoredWithValue},
    {"syslog", no_argument, nullptr, kIgnoredFlag},
    {"no-container-partial-message", no_argument, nullptr, kIgnoredFlag},
    {nullptr, 0, nullptr, 0},
};

bool ParseInt(const char* text, long long min, long long max, long long* out) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

}  // namespace

std::string ParseOptions(int argc, char** argv, Options* o) {
  // 0, not 1: glibc then forgets where an earlier scan stopped inside a group of short options
  // ("-tZq" stops at Z), which would otherwise be read on as this argv's next option.
  optind = 0;
  opterr = 0;
  long long number = 0;
  for (;;) {
    int index = 0;
    const int c = getopt_long(argc, argv, ":c:u:n:r:b:l:0:P:p:tieT:s", kOptions, &index);
    if (c == -1) break;
    switch (c) {
      case 'c': o->cid = optarg; break;
      case 'u': o->cuuid = optarg; break;
      case 'n': o->name = optarg; break;
      case 'r': o->runtime = optarg; break;
      case kRuntimeArg: o->runtime_args.emplace_back(optarg); break;
      case kRuntimeOpt: o->runtime_opts.emplace_back(optarg); break;
      case 'b': o->bundle = optarg; break;
      case 'l': o->log_path = optarg; break;
      case kLogSizeMax:
        if (!ParseInt(optarg, LLONG_MIN, LLONG_MAX, &number)) {
          return std::string("--log-size-max: not a number: ") + optarg;
        }
        o->log_size_max = number;
        break;
      case kLogGlobalSizeMax:
        if (!ParseInt(optarg, LLONG_MIN, LLONG_MAX, &number)) {
          return std::string("--log-global-size-max: not a number: ") + optarg;
        }
        o->log_global_size_max = number;
        break;
      case kExitDir: o->exit_dir = optarg; break;
      case '0': o->persist_dir = optarg; break;
      case 'P': o->conmon_pidfile = optarg; break;
      case 'p': o->container_pidfile = optarg; break;
      case kSocketDir: o->socket_dir = optarg; break;
      case 't': o->terminal = true; break;
      case 'i': o->stdin = true; break;
      case kLeaveStdinOpen: o->leave_stdin_open = true; break;
      case kNoSyncLog: o->no_sync_log = true; break;
      case 'e': o->exec = true; break;
      case kExecProcessSpec: o->exec_process_spec = optarg; break;
      case 'T':
        if (!ParseInt(optarg, 0, INT_MAX, &number)) {
          return std::string("--timeout: not a number of seconds: ") + optarg;
        }
        o->timeout = static_cast<int>(number);
        break;
      case kSync: o->sync = true; break;
      case 's': o->systemd_cgroup = true; break;
      case kNoPivot: o->no_pivot = true; break;
      case kNoNewKeyring: o->no_new_keyring = true; break;
      case kFullAttach: o->full_attach = true; break;
      case kApiVersion:
        if (!ParseInt(optarg, 0, 1, &number)) {
          return std::string("--api-version: unsupported: ") + optarg;
        }
        o->api_version = static_cast<int>(number);
        break;
      case kVersion: o->version = true; break;
      case kPodMonitor: o->pod_socket = optarg; break;
      case kRun: o->run = true; break;
      case kPodId: o->pod_id = optarg; break;
      case kPodIdleTimeout:
        if (!ParseInt(optarg, 1, 86400, &number)) {
          return std::string("--pod-idle-timeout: not a number of seconds: ") + optarg;
        }
        o->pod_idle_timeout = static_cast<int>(number);
        break;
      case kIgnoredWithValue:
      case kIgnoredFlag: break;
      case ':': return std::string("option ") + argv[optind - 1] + " needs a value";
      default: return std::string("unknown option ") + argv[optind - 1];
    }
  }
  if (optind < argc) return std::string("unexpected argument ") + argv[optind];
  if (o->version) return "";
  if (!o->pod_socket.empty() || !o->pod_id.empty()) {
    if (o->pod_socket.empty() || o->pod_socket[0] != '/') return "--pod-monitor needs an absolute path";
    if (o->pod_id.empty()) return "--pod-monitor needs --pod-id";
    if (!o->cid.empty() || o->exec || o->run) {
      return "--pod-monitor takes containers on its socket, not --cid, --exec or --run";
    }
    return "";
  }
  if (o->cid.empty()) return "--cid is required";
  if (o->runtime.empty()) return "--runtime is required";
  if (o->cuuid.empty()) o->cuuid = o->cid;
  if (o->bundle.empty()) {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == nullptr) return "--bundle is required";
    o->bundle = cwd;
  }
  if (o->container_pidfile.empty()) o->container_pidfile = o->bundle + "/pidfile-" + o->cid;
  if (o->exec && o->exec_process_spec.empty()) return "--exec needs --exec-process-spec";
  if (!o->exec && !o->exec_process_spec.empty()) return "--exec-process-spec needs --exec";
  if (o->exec && o->run) return "--run makes a container: not with --exec";
  if (o->log_path.rfind("k8s-file:", 0) == 0) {
    o->log_path = o->log_path.substr(sizeof "k8s-file:" - 1);
  } else if (o->log_path.find(':') != std::string::npos && o->log_path[0] != '/') {
    return "--log-path: only the k8s-file log driver is supported: " + o->log_path;
  }
  if (o->log_path.empty()) return "--log-path is required";
  return "";
}

}  // namespace berth::conmon
