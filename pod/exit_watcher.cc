#include "pod/exit_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "base/file_util.h"
#include "base/logging.h"

namespace berth::pod {

ExitWatcher::ExitWatcher(std::string dir, std::chrono::milliseconds tick, Callbacks callbacks)
    : dir_(std::move(dir)), tick_(tick), callbacks_(std::move(callbacks)) {}

ExitWatcher::~ExitWatcher() { Stop(); }

void ExitWatcher::Start() {
  (void)MakeDirs(dir_, 0700);
  inotify_.Reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_.valid() ||
      ::inotify_add_watch(inotify_.get(), dir_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    spdlog::error("watch {}: {}; exits are noticed every {} ms", dir_, std::strerror(errno),
                  tick_.count());
    inotify_.Reset();
  }
  wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  thread_ = std::jthread([this](std::stop_token stop) { Run(stop); });
}

void ExitWatcher::Stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  if (wake_.valid()) {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  thread_.join();
}

void ExitWatcher::Run(std::stop_token stop) {
  auto next_tick = std::chrono::steady_clock::now() + tick_;
  while (!stop.stop_requested()) {
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {inotify_.get(), POLLIN, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        next_tick - std::chrono::steady_clock::now());
    const int ready = ::poll(fds, 2, static_cast<int>(std::max<int64_t>(0, left.count()) + 1));
    if (stop.stop_requested()) break;
    if (ready > 0 && (fds[1].revents & POLLIN)) ReadEvents();
    if (std::chrono::steady_clock::now() >= next_tick) {
      if (callbacks_.on_tick) callbacks_.on_tick();
      next_tick = std::chrono::steady_clock::now() + tick_;
    }
  }
}

void ExitWatcher::ReadEvents() {
  alignas(inotify_event) char buf[4096];
  ssize_t n;
  while ((n = ::read(inotify_.get(), buf, sizeof buf)) > 0) {
    for (char* at = buf; at < buf + n;) {
      auto* event = reinterpret_cast<inotify_event*>(at);
      at += sizeof(inotify_event) + event->len;
      if (event->len == 0) continue;
      const std::string name = event->name;  // NUL-padded by the kernel
      // The temporary files of atomic writes: "<id>.tmp" (monitors), "<id>.tmp.<pid>" (berthd).
      if (absl::StrContains(name, ".tmp")) continue;
      if (callbacks_.on_exit) callbacks_.on_exit(name);
    }
  }
}

}  // namespace berth::pod
