#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "pod/exec_process.h"
#include "pod/runtime.h"

namespace berth::pod {

// What the monitor needs to create one container and keep it.
struct MonitorSpec {
  std::string id;
  std::string name;
  std::string bundle;       // holds config.json; pid files go here
  std::string log_path;     // the CRI log file
  std::string exit_dir;     // the exit file <exit_dir>/<id> appears when the container exits
  std::string persist_dir;  // the monitor's own files (exit, oom)
  std::string socket_dir;   // the attach socket
  int64_t log_size_max = -1;
  bool tty = false;
  bool stdin = false;
  bool stdin_once = false;
  // The pod the container belongs to and the directory of its monitor's socket and pid file:
  // with one monitor per pod (ConmonMonitor's per_pod), the pod's monitor creates and keeps it.
  std::string pod_id;
  std::string pod_dir;
  // Have the runtime start the container as it makes it (`run --detach`), where the monitor can
  // (Monitor::Starts): no `runtime start` follows.
  bool start = false;
};

// Whether `pid` is still the monitor of container `id`: after a reboot or a long time the pid may
// belong to another process, so its command line must name the container, or, for the monitor of
// a whole pod, that pod (`pod_id`).
bool MonitorAlive(pid_t pid, const std::string& id, const std::string& pod_id = "");
// The pid in a pid file; 0 when it is missing or unreadable.
pid_t ReadPidFile(const std::string& path);
// Makes sure the monitor of container `id` whose pid file is `pidfile` is done with it: waits up
// to `grace` for it to exit (its container was just deleted, so it is on its way out), then kills
// it. A pod's monitor watches other containers too: for one of them it waits until the monitor
// removed the pid file (it has recorded the exit), and kills it only when `id` is the pod's own.
void EndMonitor(const std::string& pidfile, const std::string& id,
                std::chrono::milliseconds grace = std::chrono::seconds(5));
// Makes sure the monitor of pod `pod_id` (in `pod_dir`) has exited, once the pod's containers,
// the pause last, are gone: one that was never asked for the pause waits for nothing.
void EndPodMonitor(const std::string& pod_dir, const std::string& pod_id,
                   std::chrono::milliseconds grace);

// Launches the per-container monitor, which runs `runtime create` and then watches the container
// for its whole life, outliving berthd.
class Monitor {
 public:
  virtual ~Monitor() = default;
  // Returns the container's pid once the runtime created it (state "created"). Internal with the
  // runtime's message if creation failed; DeadlineExceeded if the monitor does not answer.
  virtual absl::StatusOr<pid_t> Create(const MonitorSpec& spec) = 0;
  // Whether Create honours MonitorSpec::start (berth-conmon's --run; conmon only creates).
  virtual bool Starts() const { return false; }
  // Runs a process in the container under a monitor in exec mode (the conmon protocol's, as cri-o
  // uses it; berthd's ExecSync runs without one, RunExecSync) and returns its exit code and
  // output. DeadlineExceeded when it ran past the timeout (it is killed); Internal with the
  // runtime's message when it could not be started (e.g. no such binary).
  virtual absl::StatusOr<ExecResult> Exec(const ExecSpec& spec) = 0;
};
using MonitorPtr = std::unique_ptr<Monitor>;
// How the managers get a monitor for a runtime (ConmonMonitors, or a fake in tests).
using MonitorFactory = std::function<MonitorPtr(const OciRuntime* runtime, const config::Config&)>;

// The conmon protocol (upstream conmon, and berth-conmon): the command line cri-o uses, the sync
// pipe on fd 3 (_OCI_SYNCPIPE) answering {"pid": N} or {"data": N} (negative with "message" on
// failure). conmon double-forks: the process we start exits at once, the monitor stays.
//
// With `per_pod` (berth-conmon only), one monitor keeps all of a pod's containers: the first
// create starts it (--pod-monitor on <pod_dir>/pod.sock) and every create, this one too, is a
// request on that socket carrying the container's conmon command line.
class ConmonMonitor final : public Monitor {
 public:
  // `berth` when conmon_path is berth-conmon, which has more than the conmon protocol: one
  // monitor per pod (`per_pod`) and a create that starts the container too (--run).
  ConmonMonitor(std::string conmon_path, const OciRuntime* runtime, bool systemd_cgroup,
                std::chrono::seconds timeout = std::chrono::seconds(120), bool per_pod = false,
                bool berth = false)
      : conmon_path_(std::move(conmon_path)),
        runtime_(runtime),
        systemd_cgroup_(systemd_cgroup),
        per_pod_(per_pod),
        berth_(berth),
        timeout_(timeout) {}

  absl::StatusOr<pid_t> Create(const MonitorSpec& spec) override;
  bool Starts() const override { return berth_; }
  absl::StatusOr<ExecResult> Exec(const ExecSpec& spec) override;

 private:
  absl::StatusOr<pid_t> CreateInPod(const MonitorSpec& spec);
  // Connects to the pod's monitor, starting it if none answers.
  absl::StatusOr<UniqueFd> PodMonitor(const MonitorSpec& spec);

  std::string conmon_path_;
  const OciRuntime* runtime_;  // not owned
  bool systemd_cgroup_;
  bool per_pod_;
  bool berth_;
  std::chrono::seconds timeout_;
};

// ConmonMonitor at `monitor_path` (berth-conmon or conmon) for each runtime, one per pod when the
// configuration's monitor.mode says so (PerPodMonitors).
MonitorFactory ConmonMonitors(std::string monitor_path);

}  // namespace berth::pod
