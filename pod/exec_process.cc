#include "pod/exec_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/process.h"
#include "base/status_macros.h"

namespace berth::pod {
namespace {

constexpr char kPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

}  // namespace

absl::StatusOr<std::unique_ptr<ExecProcess>> ExecProcess::Start(const OciRuntime& runtime,
                                                                const std::string& id,
                                                                const std::string& process_json,
                                                                const std::string& work_dir,
                                                                bool tty, unsigned width,
                                                                unsigned height) {
  const std::string spec_path = work_dir + "/process.json";
  RETURN_IF_ERROR(WriteFileAtomic(spec_path, process_json, 0600, Durability::kVolatile));
  std::vector<std::string> args = {runtime.path(), "--root", runtime.root(), "exec",
                                   "--process", spec_path, "--pid-file", work_dir + "/pid"};
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
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
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

}  // namespace berth::pod
