#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "conmon/cri_log.h"
#include "conmon/oom.h"
#include "conmon/options.h"
#include "conmon/runtime_launch.h"

namespace berth::conmon {

// conmon's life after the runtime created the container: moves output to the CRI log and to
// attached clients, stdin from attached clients to the container, handles ctl messages (resize,
// reopen log), OOM events, signals, the exec timeout, and reaps every child until the container's
// process exits. Owns the attach socket and the ctl fifo. Single-threaded.
class EventLoop {
 public:
  struct Result {
    int wait_status = 0;
    bool timed_out = false;
  };

  EventLoop(const Options& options, CriLog* log) : o_(options), log_(log) {}
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The attach socket (<socket-dir>/<cuuid>/attach, the directory a symlink to the bundle, as
  // conmon does to stay within the socket path limit) and the <bundle>/ctl fifo. "" or the error.
  std::string SetUpControl();
  void RemoveControl();

  // Waits for the runtime to hand over the pty master; -1 if it exited first (its status is
  // then kept for RuntimeStatus).
  int AwaitConsole(int listen_fd, pid_t runtime_pid);
  // True and the status if AwaitConsole already reaped the runtime.
  bool RuntimeStatus(pid_t pid, int* status) const;

  // Runs until `container_pid` exited and its output is drained.
  Result Run(pid_t container_pid, const Stdio& stdio, int signal_fd);

 private:
  struct Client {
    int fd;
  };
  void Add(int fd);
  void Del(int fd);
  void OnOutput(int fd, bool drain_only);
  void OnAttach();
  void OnClient(int fd);
  void OnCtl();
  void CloseStdin();
  void MarkOom();
  bool Reap();

  const Options& o_;
  CriLog* log_;
  int epoll_ = -1;
  int attach_fd_ = -1;
  std::string attach_link_;  // <socket-dir>/<cuuid>
  std::string attach_path_;
  int ctl_fd_ = -1;
  std::string ctl_path_;
  std::string ctl_pending_;  // a ctl line not yet complete
  std::vector<int> clients_;
  Stdio stdio_;
  pid_t container_pid_ = -1;
  bool exited_ = false;
  int wait_status_ = 0;
  pid_t runtime_pid_ = -1;
  int runtime_status_ = 0;
  bool runtime_reaped_ = false;
  OomWatcher oom_;
  bool oom_marked_ = false;
};

}  // namespace berth::conmon
