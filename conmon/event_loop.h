#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "conmon/cri_log.h"
#include "conmon/oom.h"
#include "conmon/options.h"
#include "conmon/runtime_launch.h"
#include "conmon/sync_pipe.h"

namespace berth::conmon {

// conmon's life: starts the runtime for each container (or exec'd process) it is given, reports
// the container's pid, then moves output to the CRI log and to attached clients, stdin from
// attached clients to the container, handles ctl messages (resize, reopen log), OOM events,
// signals and the exec timeout, reaps every child, and records each exit in the files berthd
// reads. Each container owns its attach socket and ctl fifo. Single-threaded; nothing it does for
// one container waits on another (the runtime's create runs while the others' output flows).
//
// One container (conmon's own mode): Start it and Run until it is gone. A pod monitor: Serve a
// listening socket whose clients each send one container's conmon command line and read back the
// pid line, and Run until the pod's last container is gone.
class EventLoop {
 public:
  // `signal_fd`: a signalfd for SIGCHLD and the signals forwarded to the containers.
  explicit EventLoop(int signal_fd);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Begins creating the container `o` describes; the outcome is sent on `report`, which the loop
  // closes afterwards when `close_report` (a pod client's connection).
  void Start(const Options& o, SyncPipe report, bool close_report);
  // Pod mode: takes create requests on `listen_fd` (owned). With nothing to watch it waits
  // `idle_seconds` for a first request, then ends.
  void Serve(int listen_fd, int idle_seconds);
  // Runs until no container is left (and, serving, no request is in progress).
  void Run();
  // Whether a create failed (a single container's monitor then exits 1, as conmon does).
  bool create_failed() const { return create_failed_; }

 private:
  struct Container;
  enum class Kind { kSignal, kListen, kRequest, kIdle, kOutput, kAttach, kClient, kCtl, kOom,
                    kTimer, kConsole };
  struct Target {
    Kind kind;
    Container* c = nullptr;
  };

  void Add(int fd, Kind kind, Container* c = nullptr);
  void Close(int* fd);
  std::string SetUpControl(Container& c);
  void RemoveControl(Container& c);
  void Fail(Container& c, const std::string& message);
  void Drop(Container& c);
  void OnRuntimeExit(Container& c, int status);
  void OnConsole(Container& c);
  void OnExit(Container& c, int status);
  void OnOutput(Container& c, int fd, bool drain_only);
  void OnAttach(Container& c);
  void OnClient(Container& c, int fd);
  void OnCtl(Container& c);
  void OnTimeout(Container& c);
  void OnSignal();
  void OnAccept();
  void OnRequest(int fd);
  void CloseStdin(Container& c);
  void MarkOom(Container& c);
  void Reap();
  bool Done() const;

  int epoll_ = -1;
  int signal_fd_;
  int listen_fd_ = -1;
  int idle_fd_ = -1;
  bool served_ = false;  // a request came (a pod monitor ends once its containers are gone)
  bool idle_expired_ = false;
  bool create_failed_ = false;
  bool changed_ = false;  // fds were closed: the rest of an epoll batch may name stale ones
  std::unordered_map<int, Target> targets_;
  std::map<int, std::string> requests_;  // pod clients whose request is still arriving
  std::vector<std::unique_ptr<Container>> containers_;
  // Children reaped before we knew them as a container's process (one that exits while its
  // runtime is still being reaped); only kept while a create is in progress.
  std::map<pid_t, int> unclaimed_;
};

}  // namespace berth::conmon
