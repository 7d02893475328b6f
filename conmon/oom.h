#pragma once

#include <sys/types.h>

#include <string>

namespace berth::conmon {

// Notices that the kernel's OOM killer struck in a container's memory cgroup. cgroup v1: an
// eventfd registered on memory.oom_control; cgroup v2: inotify on memory.events, comparing the
// oom_kill counter. The owner polls fd() and calls Check() when it is readable, and once more
// after the container exited. Not thread-safe.
class OomWatcher {
 public:
  OomWatcher() = default;
  ~OomWatcher();
  OomWatcher(const OomWatcher&) = delete;
  OomWatcher& operator=(const OomWatcher&) = delete;

  // Finds the memory cgroup of `pid` and starts watching; false if there is none to watch.
  bool Watch(pid_t pid);
  // The fd to poll, or -1.
  int fd() const { return event_fd_; }
  // Consumes the pending event; true if an OOM kill happened since the last call.
  bool Check();

 private:
  bool v2_ = false;
  std::string dir_;  // the cgroup directory
  int event_fd_ = -1;
  int control_fd_ = -1;  // v1: memory.oom_control, kept open while registered
  long long last_kills_ = 0;
  long long ReadKills() const;
};

}  // namespace berth::conmon
