#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace berth::conmon {

// The part of upstream conmon's command line that cri-o uses (and berthd), so that either binary
// can be the monitor. Options conmon has but that do not change what a CRI runtime sees
// (--log-level, --syslog, --log-tag, ...) are accepted and ignored.
struct Options {
  std::string cid;                 // -c/--cid
  std::string cuuid;               // -u/--cuuid
  std::string name;                // -n/--name
  std::string runtime;             // -r/--runtime
  std::vector<std::string> runtime_args;  // --runtime-arg, before the subcommand
  std::vector<std::string> runtime_opts;  // --runtime-opt, after the subcommand
  std::string bundle;              // -b/--bundle (default: the working directory)
  std::string log_path;            // -l/--log-path, "k8s-file:" prefix allowed
  int64_t log_size_max = -1;       // --log-size-max
  int64_t log_global_size_max = -1;  // --log-global-size-max: all records ever written, then none
  std::string exit_dir;            // --exit-dir
  std::string persist_dir;         // --persist-dir (-0)
  std::string conmon_pidfile;      // -P/--conmon-pidfile
  std::string container_pidfile;   // -p/--container-pidfile
  std::string socket_dir;          // --socket-dir-path
  bool terminal = false;           // -t/--terminal
  bool stdin = false;              // -i/--stdin
  bool leave_stdin_open = false;   // --leave-stdin-open
  bool no_sync_log = false;        // --no-sync-log
  bool exec = false;               // -e/--exec
  // berth-conmon's own: `runtime run --detach` instead of `create`, the container started as it
  // is made (berthd's StartContainer then has no `runtime start` to run).
  bool run = false;                // --run
  std::string exec_process_spec;   // --exec-process-spec
  int timeout = 0;                 // -T/--timeout (seconds; exec)
  bool sync = false;               // --sync: do not daemonize
  bool systemd_cgroup = false;     // -s/--systemd-cgroup
  bool no_pivot = false;           // --no-pivot
  bool no_new_keyring = false;     // --no-new-keyring
  bool full_attach = false;        // --full-attach
  int api_version = 0;             // --api-version
  bool version = false;            // --version
  // berth-conmon's own mode, one monitor for all of a pod's containers: it listens on this unix
  // socket for create requests (each a conmon command line) instead of creating one container.
  std::string pod_socket;          // --pod-monitor
  std::string pod_id;              // --pod-id: the sandbox's id, which names the monitor
  int pod_idle_timeout = 60;       // --pod-idle-timeout: seconds to wait for a first container
};

// Parses argv. Returns "" on success, otherwise what is wrong.
// A pod monitor's command line (--pod-monitor) needs --pod-id and takes no container options.
std::string ParseOptions(int argc, char** argv, Options* out);

}  // namespace berth::conmon
