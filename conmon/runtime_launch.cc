#include "conmon/runtime_launch.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace berth::conmon {

std::vector<std::string> RuntimeArgv(const Options& o, const std::string& console_socket) {
  std::vector<std::string> argv = {o.runtime};
  argv.insert(argv.end(), o.runtime_args.begin(), o.runtime_args.end());
  if (o.exec) {
    argv.insert(argv.end(), {"exec", "--pid-file", o.container_pidfile, "--process",
                             o.exec_process_spec, "--detach"});
    if (o.terminal) argv.emplace_back("--tty");
  } else {
    if (o.run) {
      argv.insert(argv.end(), {"run", "--detach", "--bundle", o.bundle, "--pid-file",
                               o.container_pidfile});
    } else {
      argv.insert(argv.end(), {"create", "--bundle", o.bundle, "--pid-file", o.container_pidfile});
    }
    if (o.no_pivot) argv.emplace_back("--no-pivot");
    if (o.no_new_keyring) argv.emplace_back("--no-new-keyring");
  }
  if (!console_socket.empty()) argv.insert(argv.end(), {"--console-socket", console_socket});
  argv.insert(argv.end(), o.runtime_opts.begin(), o.runtime_opts.end());
  argv.push_back(o.cid);
  return argv;
}

int MakePipes(bool with_stdin, Stdio* ours, WorkerFds* theirs) {
  int p[2];
  if (with_stdin) {
    if (::pipe2(p, O_CLOEXEC) != 0) return errno;
    theirs->in = p[0];
    ours->in = p[1];
  }
  if (::pipe2(p, O_CLOEXEC) != 0) return errno;
  ours->out = p[0];
  theirs->out = p[1];
  if (::pipe2(p, O_CLOEXEC) != 0) return errno;
  ours->err = p[0];
  theirs->err = p[1];
  return 0;
}

pid_t SpawnRuntime(const std::vector<std::string>& args, const WorkerFds& fds) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();  // conmon is single-threaded: fork is safe here
  if (pid != 0) return pid;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  const int null_fd = ::open("/dev/null", O_RDWR);
  const int in = fds.in >= 0 ? fds.in : null_fd;
  const int out = fds.out >= 0 ? fds.out : null_fd;
  const int err = fds.err >= 0 ? fds.err : null_fd;
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) _exit(127);
  ::closefrom(3);
  ::execv(argv[0], argv.data());
  const char* why = std::strerror(errno);
  (void)!::write(2, "exec runtime ", 13);
  (void)!::write(2, argv[0], std::strlen(argv[0]));
  (void)!::write(2, ": ", 2);
  (void)!::write(2, why, std::strlen(why));
  _exit(127);
}

int ListenConsoleSocket(std::string* path) {
  char dir[] = "/tmp/berth-conmon-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return -1;
  *path = std::string(dir) + "/console.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path->c_str(), sizeof addr.sun_path - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

int ReceiveConsole(int listen_fd) {
  int conn;
  do {
    conn = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  } while (conn < 0 && errno == EINTR);
  if (conn < 0) return -1;
  char name[256];
  iovec iov{name, sizeof name};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    cmsghdr align;
  } control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  ssize_t n;
  do {
    n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  ::close(conn);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (n < 0 || c == nullptr || c->cmsg_type != SCM_RIGHTS) return -1;
  int master;
  std::memcpy(&master, CMSG_DATA(c), sizeof master);
  // kubelet's terminals expect CRLF output, as conmon sets it.
  termios t;
  if (::tcgetattr(master, &t) == 0) {
    t.c_oflag |= ONLCR;
    ::tcsetattr(master, TCSANOW, &t);
  }
  return master;
}

pid_t ReadPidFile(const std::string& path) {
  std::ifstream in(path);
  long pid = -1;
  if (!(in >> pid) || pid <= 0) return -1;
  return static_cast<pid_t>(pid);
}

bool WriteFileAtomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace berth::conmon
