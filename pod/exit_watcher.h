#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "base/unique_fd.h"

namespace berth::pod {

// Watches the directory monitors write their exit files to (run_root/exits, also the pause's):
// calls `on_exit` with the name of each file completed there (by close after writing, or by the
// rename of an atomic write; the temporary files of such writes, "*.tmp*", are not reported), and `on_tick` every
// `tick`, for what no file tells (a monitor that died without writing one, kept results that
// expired). Without inotify (it could not be set up; logged) the ticks still come. The callbacks
// run on the watcher's own thread, one at a time, never after Stop() returned. The thread
// sleeps between events and ticks: no polling.
class ExitWatcher {
 public:
  struct Callbacks {
    std::function<void(const std::string& name)> on_exit;
    std::function<void()> on_tick;
  };

  ExitWatcher(std::string dir, std::chrono::milliseconds tick, Callbacks callbacks);
  ~ExitWatcher();  // Stop()
  ExitWatcher(const ExitWatcher&) = delete;
  ExitWatcher& operator=(const ExitWatcher&) = delete;

  // Creates the directory if missing and starts watching it. Once.
  void Start();
  // Stops the thread and waits for it (and for a callback in progress). Idempotent.
  void Stop();

 private:
  void Run(std::stop_token stop);
  void ReadEvents();

  const std::string dir_;
  const std::chrono::milliseconds tick_;
  const Callbacks callbacks_;
  UniqueFd inotify_;
  UniqueFd wake_;  // an eventfd: Stop() wakes the thread with it
  std::jthread thread_;
};

}  // namespace berth::pod
