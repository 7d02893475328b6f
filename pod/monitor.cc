#include "pod/monitor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "base/failpoint.h"
#include "base/file_util.h"
#include "base/process.h"
#include "base/reaper.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "conmon/pod_request.h"
#include "nlohmann/json.hpp"
#include "base/logging.h"
#include "pod/cri_log.h"
#include "pod/op_locks.h"

namespace berth::pod {
namespace {

constexpr int kSyncFd = 3;

std::vector<std::string> ConmonArgs(const std::string& conmon, const OciRuntime& runtime,
                                    bool systemd_cgroup, const MonitorSpec& s) {
  std::vector<std::string> args = {
      conmon,
      "--cid", s.id,
      "--cuuid", s.id,
      "--name", s.name.empty() ? s.id : s.name,
      "--runtime", runtime.path(),
      "--bundle", s.bundle,
      "--container-pidfile", s.bundle + "/pidfile",
      "--conmon-pidfile", s.bundle + "/conmon-pidfile",
      "--log-path", s.log_path,
      "--exit-dir", s.exit_dir,
      "--persist-dir", s.persist_dir,
      "--socket-dir-path", s.socket_dir,
      "--runtime-arg", "--root=" + runtime.root(),
      "--log-level", "info",
  };
  if (s.start) args.push_back("--run");
  if (s.tty) args.push_back("--terminal");
  if (s.stdin) args.push_back("--stdin");
  if (s.stdin && !s.stdin_once) args.push_back("--leave-stdin-open");
  if (s.log_size_max > 0) {
    args.push_back("--log-size-max");
    args.push_back(std::to_string(s.log_size_max));
  }
  if (systemd_cgroup) {
    args.push_back("--systemd-cgroup");
    args.push_back("--runtime-arg");
    args.push_back("--systemd-cgroup");
  }
  return args;
}

// Starts the monitor with a sync pipe and returns the pipe's read end, which reaches EOF once
// every monitor process is gone. In `dir`, the container's (or the exec's, or the pod's) own
// directory: upstream conmon writes files such as its "oom" marker relative to its working
// directory, which must not be berthd's.
absl::StatusOr<UniqueFd> SpawnConmon(const std::vector<std::string>& args,
                                     const std::string& dir) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "sync pipe");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  // The monitor outlives berthd: it must not keep any of berthd's sockets or files open.
  ASSIGN_OR_RETURN(pid_t pid,
                   SpawnProcess({.argv = args,
                                 .env = {absl::StrCat("_OCI_SYNCPIPE=", kSyncFd),
                                         "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                         "/sbin:/bin"},
                                 .extra_fds = {{write_end.get(), kSyncFd}},
                                 .new_session = true,
                                 .cwd = dir}));
  ReapChild(pid);  // the first conmon process forks the monitor and exits
  return read_end;
}

// Reads the sync pipe until a JSON line with `key` (or "data") arrives.
absl::StatusOr<nlohmann::json> ReadSync(int fd, std::chrono::seconds timeout,
                                        const char* key = "pid") {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string buffer;
  char chunk[4096];
  for (;;) {
    for (absl::string_view line : absl::StrSplit(buffer, '\n')) {
      nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
      if (j.is_object() && (j.contains(key) || j.contains("data"))) return j;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) {
      return absl::DeadlineExceededError(absl::StrCat("the monitor did not report (", key, ")"));
    }
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::InternalError("the monitor exited without reporting the container");
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

// The pid a monitor reports ({"pid": N} or {"data": N}), or its message as the error.
absl::StatusOr<pid_t> ReadPid(int fd, std::chrono::seconds timeout, const std::string& what) {
  absl::StatusOr<nlohmann::json> sync = ReadSync(fd, timeout);
  if (!sync.ok()) return Annotate(sync.status(), what);
  const nlohmann::json& value = sync->contains("pid") ? (*sync)["pid"] : (*sync)["data"];
  const int pid = value.is_number_integer() ? value.get<int>() : -1;
  if (pid <= 0) {
    return absl::InternalError(absl::StrCat(what, ": ", sync->value("message", "runtime failed")));
  }
  return static_cast<pid_t>(pid);
}

std::string Cmdline(pid_t pid) {
  // Not an istreambuf_iterator: a process exiting between the open and the read makes the read
  // fail (ESRCH), which libstdc++'s filebuf throws past the iterator and ended berthd.
  return ReadFile("/proc/" + std::to_string(pid) + "/cmdline").value_or("");
}

// berth-conmon's pod mode (its arguments are NUL-separated in the command line).
bool IsPodMonitor(const std::string& cmdline) {
  return cmdline.find(std::string("\0--pod-monitor\0", 15)) != std::string::npos;
}

// One start of a pod's monitor at a time: two would take the socket from each other.
OpLocks& PodMonitorStarts() {
  static OpLocks* const starts = new OpLocks();
  return *starts;
}

absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the pod monitor's socket path ", path, " is too long: choose a shorter run_root"));
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoToStatus(errno, "socket");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return ErrnoToStatus(errno, absl::StrCat("connect to ", path));
  return fd;
}

absl::Status WriteAllTo(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, "send to the pod's monitor");
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

void AwaitEof(int fd, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[512];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR)) return;
  }
}

}  // namespace

absl::StatusOr<ExecResult> ConmonMonitor::Exec(const ExecSpec& spec) {
  const std::string what = absl::StrCat("exec in container ", spec.container_id);
  const std::string process_path = spec.work_dir + "/process.json";
  const std::string log_path = spec.work_dir + "/exec.log";
  RETURN_IF_ERROR(WriteFileAtomic(process_path, spec.process_json, 0600, Durability::kVolatile));
  std::vector<std::string> args = {
      conmon_path_,
      "--cid", spec.container_id,
      "--cuuid", absl::StrCat(spec.container_id, "-exec"),
      "--runtime", runtime_->path(),
      "--runtime-arg", "--root=" + runtime_->root(),
      "--bundle", spec.work_dir,
      "--container-pidfile", spec.work_dir + "/pidfile",
      "--log-path", log_path,
      // The monitor stops recording there: the output is bounded while it is written.
      "--log-global-size-max", std::to_string(spec.output_max),
      // Upstream conmon sets up an attach socket for exec sessions too.
      "--socket-dir-path", spec.work_dir,
      "--exec", "--exec-process-spec", process_path,
      "--log-level", "info",
  };
  if (systemd_cgroup_) {
    args.push_back("--runtime-arg");
    args.push_back("--systemd-cgroup");
  }
  if (spec.timeout.count() > 0) {
    args.push_back("--timeout");
    args.push_back(std::to_string(spec.timeout.count()));
  }
  ASSIGN_OR_RETURN(UniqueFd read_end, SpawnConmon(args, spec.work_dir));
  // The timeout is the monitor's to enforce; allow it time to report.
  const std::chrono::seconds wait =
      spec.timeout.count() > 0 ? spec.timeout + std::chrono::seconds(30) : std::chrono::hours(24);
  absl::StatusOr<nlohmann::json> sync = ReadSync(read_end.get(), wait, "exit_code");
  if (!sync.ok()) return Annotate(sync.status(), what);
  // The monitor still cleans up after its report (upstream conmon even creates files in the
  // work directory then): wait for it to exit, which closes the pipe, before the caller removes it.
  AwaitEof(read_end.get(), std::chrono::seconds(5));
  const nlohmann::json& value = sync->contains("exit_code") ? (*sync)["exit_code"] : (*sync)["data"];
  const int code = value.is_number_integer() ? value.get<int>() : -1;
  const std::string message = sync->value("message", "");
  if (code < 0) {
    if (absl::StrContains(message, "timed out")) {
      return absl::DeadlineExceededError(absl::StrCat(
          what, ": command timed out after ", spec.timeout.count(), "s"));
    }
    return absl::InternalError(absl::StrCat(what, ": ", message.empty() ? "failed" : message));
  }
  ASSIGN_OR_RETURN(CriLogStreams streams, ReadCriLog(log_path, spec.output_max));
  return ExecResult{code, std::move(streams.stdout_data), std::move(streams.stderr_data)};
}

absl::StatusOr<pid_t> ConmonMonitor::Create(const MonitorSpec& requested) {
  MonitorSpec spec = requested;
  spec.start = spec.start && berth_;
  for (const std::string& dir : {spec.exit_dir, spec.persist_dir, spec.socket_dir,
                                 DirName(spec.log_path)}) {
    RETURN_IF_ERROR(MakeDirs(dir, 0700));
  }
  if (per_pod_ && !spec.pod_id.empty()) return CreateInPod(spec);
  ASSIGN_OR_RETURN(
      UniqueFd read_end,
      SpawnConmon(ConmonArgs(conmon_path_, *runtime_, systemd_cgroup_, spec), spec.bundle));
  return ReadPid(read_end.get(), timeout_, absl::StrCat("create container ", spec.id));
}

absl::StatusOr<UniqueFd> ConmonMonitor::PodMonitor(const MonitorSpec& spec) {
  const std::string socket = spec.pod_dir + "/pod.sock";
  std::shared_ptr<absl::Mutex> lock = PodMonitorStarts().Get(spec.pod_id);
  absl::MutexLock hold(lock.get());
  absl::StatusOr<UniqueFd> conn = ConnectUnix(socket);
  if (conn.ok()) return conn;
  RETURN_IF_ERROR(MakeDirs(spec.pod_dir, 0700));
  const std::vector<std::string> args = {
      conmon_path_,
      "--pod-monitor", socket,
      "--pod-id", spec.pod_id,
      "--conmon-pidfile", spec.pod_dir + "/pod-monitor.pid",
      "--log-level", "info",
  };
  ASSIGN_OR_RETURN(UniqueFd read_end, SpawnConmon(args, spec.pod_dir));
  const std::string what = absl::StrCat("start the monitor of pod ", spec.pod_id);
  ASSIGN_OR_RETURN(const pid_t monitor, ReadPid(read_end.get(), timeout_, what));
  absl::Status fp = Failpoint("sandbox.run.pod_monitor_started");
  absl::StatusOr<UniqueFd> started = fp.ok() ? ConnectUnix(socket) : fp;
  if (!started.ok()) {
    // It was asked for nothing: it would only wait out its idle time.
    if (MonitorAlive(monitor, spec.pod_id)) ::kill(monitor, SIGKILL);
    return Annotate(started.status(), what);
  }
  return started;
}

absl::StatusOr<pid_t> ConmonMonitor::CreateInPod(const MonitorSpec& spec) {
  ASSIGN_OR_RETURN(UniqueFd conn, PodMonitor(spec));
  const std::string what = absl::StrCat("create container ", spec.id);
  const std::string request =
      conmon::EncodePodRequest(ConmonArgs(conmon_path_, *runtime_, systemd_cgroup_, spec));
  RETURN_IF_ERROR(Annotate(WriteAllTo(conn.get(), request), what));
  return ReadPid(conn.get(), timeout_, what);
}

bool MonitorAlive(pid_t pid, const std::string& id, const std::string& pod_id) {
  if (pid <= 0) return false;
  const std::string cmdline = Cmdline(pid);
  if (cmdline.find(id) != std::string::npos) return true;
  return !pod_id.empty() && IsPodMonitor(cmdline) && cmdline.find(pod_id) != std::string::npos;
}

pid_t ReadPidFile(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  return (in >> pid) && pid > 0 ? static_cast<pid_t>(pid) : 0;
}

void EndMonitor(const std::string& pidfile, const std::string& id,
                std::chrono::milliseconds grace) {
  const pid_t pid = ReadPidFile(pidfile);
  const std::string cmdline = pid > 0 ? Cmdline(pid) : "";
  const bool pods = IsPodMonitor(cmdline);
  if (pods && cmdline.find(id) == std::string::npos) {
    // The pod's monitor goes on with the pod's other containers; it removes the pid file once
    // it recorded this one's exit.
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (::access(pidfile.c_str(), F_OK) == 0 && Cmdline(pid) == cmdline) {
      if (std::chrono::steady_clock::now() >= deadline) {
        spdlog::warn("container {}: the pod's monitor {} did not record its exit", id, pid);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return;
  }
  if (!MonitorAlive(pid, id)) return;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid() || !MonitorAlive(pid, id)) return;  // gone, or no longer ours
  pollfd p{pidfd.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(grace.count())) > 0) return;
  spdlog::warn("container {}: its monitor {} did not exit, killing it", id, pid);
  ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
  (void)::poll(&p, 1, 5000);
}

void EndPodMonitor(const std::string& pod_dir, const std::string& pod_id,
                   std::chrono::milliseconds grace) {
  EndMonitor(pod_dir + "/pod-monitor.pid", pod_id, grace);
  PodMonitorStarts().Erase(pod_id);
}

MonitorFactory ConmonMonitors(std::string monitor_path) {
  return [path = std::move(monitor_path)](const OciRuntime* runtime, const config::Config& config) {
    return std::make_unique<ConmonMonitor>(path, runtime, config.cgroup_manager == "systemd",
                                           std::chrono::seconds(120), config.monitor.per_pod(),
                                           /*berth=*/config.monitor.path.empty());
  };
}

}  // namespace berth::pod
