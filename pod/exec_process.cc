#include "pod/exec_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/process.h"
#include "base/reaper.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "nlohmann/json.hpp"
#include "pod/cgroup_support.h"
#include "pod/monitor.h"

namespace berth::pod {
namespace {

constexpr char kPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The last error the runtime wrote to its JSON log ("" if none).
std::string RuntimeLogError(const std::string& log_path) {
  absl::StatusOr<std::string> log = ReadFile(log_path);
  if (!log.ok()) return "";
  std::string message;
  for (absl::string_view line : absl::StrSplit(*log, '\n', absl::SkipEmpty())) {
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_object() && record.value("level", "") == "error" && record.contains("msg") &&
        record["msg"].is_string()) {
      message = record["msg"].get<std::string>();
    }
  }
  return message;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExecProcess>> ExecProcess::Start(const OciRuntime& runtime,
                                                                const std::string& id,
                                                                const std::string& process_json,
                                                                const std::string& work_dir,
                                                                bool tty, unsigned width,
                                                                unsigned height) {
  const std::string spec_path = work_dir + "/process.json";
  RETURN_IF_ERROR(WriteFileAtomic(spec_path, process_json, 0600, Durability::kVolatile));
  // The runtime's errors go to a log of their own, not into the process's stderr.
  std::vector<std::string> args = {runtime.path(), "--root", runtime.root(),
                                   "--log", work_dir + "/runtime.log", "--log-format", "json",
                                   "exec", "--process", spec_path, "--pid-file", work_dir + "/pid"};
  std::unique_ptr<ExecProcess> p(new ExecProcess());
  p->tty_ = tty;
  p->work_dir_ = work_dir;
  if (tty) {
    // runc in the foreground with a tty proxies between its own terminal and the container's:
    // give it a pty of ours as its controlling terminal. Resizing our side sends it SIGWINCH,
    // which it passes on.
    UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!master.valid() || ::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0) {
      return ErrnoToStatus(errno, "allocate a pty");
    }
    char slave[128];
    if (::ptsname_r(master.get(), slave, sizeof slave) != 0) return ErrnoToStatus(errno, "ptsname");
    // The size the runtime starts with: it reads ours once, then follows SIGWINCH.
    if (width > 0 && height > 0) {
      winsize ws{};
      ws.ws_col = static_cast<unsigned short>(width);
      ws.ws_row = static_cast<unsigned short>(height);
      ::ioctl(master.get(), TIOCSWINSZ, &ws);
    }
    args.insert(args.end(), {"--tty", id});
    ASSIGN_OR_RETURN(p->pid_, SpawnProcess({.argv = args, .env = {kPath}, .terminal = slave}));
    p->stdin_.Reset(::dup(master.get()));
    p->stdout_ = std::move(master);
    return p;
  }
  UniqueFd err_read, err_write;
  {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe");
    err_read.Reset(fds[0]);
    err_write.Reset(fds[1]);
  }
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe");
  UniqueFd in_read(in[0]);
  p->stdin_.Reset(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return ErrnoToStatus(errno, "pipe");
  p->stdout_.Reset(out[0]);
  UniqueFd out_write(out[1]);
  args.push_back(id);
  ASSIGN_OR_RETURN(p->pid_, SpawnProcess({.argv = args,
                                          .env = {kPath},
                                          .stdin_fd = in_read.get(),
                                          .stdout_fd = out_write.get(),
                                          .stderr_fd = err_write.get()}));
  p->stderr_ = std::move(err_read);
  return p;
}

ExecProcess::~ExecProcess() {
  if (pid_ > 0) {
    Kill();
    Wait();
  }
  if (!work_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(work_dir_, ec);
  }
}

void ExecProcess::CloseStdin() {
  if (!tty_) {
    stdin_.Reset();
  } else if (stdin_.valid()) {
    // A tty has no half-close: send EOF (^D) the way a terminal would.
    const char eot = 4;
    (void)!::write(stdin_.get(), &eot, 1);
  }
}

void ExecProcess::Resize(unsigned width, unsigned height) {
  if (!tty_ || !stdin_.valid()) return;
  winsize ws{};
  ws.ws_col = static_cast<unsigned short>(width);
  ws.ws_row = static_cast<unsigned short>(height);
  ::ioctl(stdin_.get(), TIOCSWINSZ, &ws);
}

int ExecProcess::Wait() {
  if (pid_ <= 0) return -1;
  const int status = ReapChild(pid_);
  pid_ = -1;
  return DecodeWaitStatus(status);
}

void ExecProcess::Kill() {
  if (pid_ <= 0) return;
  // The process in the container first (runc cannot pass SIGKILL on), then runc.
  std::ifstream in(work_dir_ + "/pid");
  pid_t process = 0;
  if (in >> process && process > 1) ::kill(process, SIGKILL);
  ::kill(-pid_, SIGKILL);
}

absl::StatusOr<ExecResult> RunExecSync(const OciRuntime& runtime, const ExecSpec& spec) {
  const std::string what = absl::StrCat("exec in container ", spec.container_id);
  RETURN_IF_ERROR(BecomeSubreaper());
  const std::string spec_path = spec.work_dir + "/process.json";
  const std::string pid_path = spec.work_dir + "/pid";
  const std::string log_path = spec.work_dir + "/runtime.log";
  RETURN_IF_ERROR(WriteFileAtomic(spec_path, spec.process_json, 0600, Durability::kVolatile));
  std::array<UniqueFd, 2> pipes, write_ends;
  for (size_t i = 0; i < pipes.size(); ++i) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return ErrnoToStatus(errno, "pipe");
    pipes[i].Reset(fds[0]);
    write_ends[i].Reset(fds[1]);
  }
  // Detached, the runtime hands the pipes to the process itself and exits once it runs.
  std::vector<std::string> argv =
      spec.exec_helper.empty()
          ? std::vector<std::string>{runtime.path(), "--root", runtime.root(), "--log", log_path,
                                     "--log-format", "json", "exec", "--detach", "--process",
                                     spec_path, "--pid-file", pid_path, spec.container_id}
          : std::vector<std::string>{spec.exec_helper, "--log", log_path, "--pid-file", pid_path,
                                     "--process", spec_path, "--config", spec.config_path,
                                     "--container-id", spec.container_id, "--pid",
                                     std::to_string(spec.pid)};
  auto pending = std::make_unique<ClaimPending>();
  ASSIGN_OR_RETURN(
      const pid_t runtime_pid,
      SpawnProcess({.argv = std::move(argv),
                    .env = {kPath},
                    .stdout_fd = write_ends[0].get(),
                    .stderr_fd = write_ends[1].get()}));
  for (UniqueFd& fd : write_ends) fd.Reset();
  if (spec.exec_helper.empty()) WarmCgroupAttach();  // berth-exec needs no head start
  UniqueFd runtime_exit(static_cast<int>(::syscall(SYS_pidfd_open, runtime_pid, 0)));
  pid_t pid = 0;  // the process, once the runtime has started it
  UniqueFd process_exit;
  // Ends whatever still runs and reaps it: on a timeout, or an error.
  auto end_all = [&] {
    if (runtime_pid > 0 && runtime_exit.valid()) {
      ::kill(-runtime_pid, SIGKILL);
      ReapChild(runtime_pid);
    }
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ReapChild(pid);
    }
  };
  if (!runtime_exit.valid()) {
    const absl::Status failed = ErrnoToStatus(errno, "pidfd_open");
    ::kill(-runtime_pid, SIGKILL);
    ReapChild(runtime_pid);
    return failed;
  }

  ExecResult result;
  const std::array<std::string*, 2> sinks = {&result.stdout_data, &result.stderr_data};
  size_t kept = 0;
  // Reads what pipe `i` holds now; closes it at EOF.
  auto drain = [&](size_t i) {
    char buf[16384];
    while (pipes[i].valid()) {
      const ssize_t n = ::read(pipes[i].get(), buf, sizeof buf);
      if (n > 0) {
        const size_t take = std::min(static_cast<size_t>(n), spec.output_max - kept);
        sinks[i]->append(buf, take);
        kept += take;
      } else if (n == 0 || errno != EINTR) {
        if (n == 0 || errno != EAGAIN) pipes[i].Reset();
        return;
      }
    }
  };
  const auto deadline = std::chrono::steady_clock::now() + spec.timeout;
  int status = -1;
  for (;;) {
    int wait_ms = -1;
    if (spec.timeout.count() > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      wait_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    std::array<pollfd, 3> fds = {
        pollfd{process_exit.valid() ? process_exit.get() : runtime_exit.get(), POLLIN, 0},
        pollfd{pipes[0].valid() ? pipes[0].get() : -1, POLLIN, 0},
        pollfd{pipes[1].valid() ? pipes[1].get() : -1, POLLIN, 0}};
    const int ready = ::poll(fds.data(), fds.size(), wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      const absl::Status failed = ready < 0 ? ErrnoToStatus(errno, "poll")
                                            : absl::DeadlineExceededError(absl::StrCat(
                                                  what, ": command timed out after ",
                                                  spec.timeout.count(), "s"));
      end_all();
      return failed;
    }
    for (size_t i = 0; i < pipes.size(); ++i) {
      if (fds[i + 1].revents != 0) drain(i);
    }
    if (fds[0].revents == 0) continue;
    if (!process_exit.valid()) {
      // The runtime is done: the process runs (and is ours now), or it could not be started.
      const int runtime_status = ReapChild(runtime_pid);
      runtime_exit.Reset();
      pid = ReadPidFile(pid_path);
      if (DecodeWaitStatus(runtime_status) != 0 || pid <= 0) {
        std::string message = RuntimeLogError(log_path);
        if (message.empty()) message = Tail(result.stderr_data);
        end_all();
        return absl::InternalError(absl::StrCat(what, ": ", message.empty() ? "failed" : message));
      }
      ClaimChild(pid);
      pending.reset();
      process_exit.Reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
      if (!process_exit.valid()) {
        const absl::Status failed = ErrnoToStatus(errno, "pidfd_open");
        end_all();
        return failed;
      }
      continue;
    }
    // The process exited: take what the pipes hold now and stop there, even if a child it left
    // behind still has them open.
    status = ReapChild(pid);
    for (size_t i = 0; i < pipes.size(); ++i) drain(i);
    break;
  }
  result.exit_code = DecodeWaitStatus(status);
  return result;
}

}  // namespace berth::pod
