#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace berth::cri::streaming {

// The channels of the remote-command protocols (their numbers are the WebSocket channel bytes).
enum class Channel { kStdin = 0, kStdout = 1, kStderr = 2, kError = 3, kResize = 4 };

// What the client sends during an exec or attach session, as the transport delivers it: stdin
// (held until the process is there), its end, terminal sizes, and the client's going away.
// Thread-safe.
class Inbound {
 public:
  void Stdin(std::string_view data);
  void StdinClosed();
  // Terminal sizes as JSON objects {"Width":W,"Height":H}, possibly split or concatenated.
  void ResizeJson(std::string_view data);
  void Gone();

  // Connects the process: stdin goes to `sink` (first what arrived before), its end to
  // `close`, sizes to `resize`, the client's leaving to `gone`. Clear() disconnects.
  void Connect(std::function<void(std::string_view)> sink, std::function<void()> close,
               std::function<void(unsigned, unsigned)> resize, std::function<void()> gone);
  void Clear();

  // Waits up to `timeout` for the first terminal size; 0x0 if none came.
  std::pair<unsigned, unsigned> AwaitSize(absl::Duration timeout);
  bool gone();

 private:
  // Stdin held for a process yet to start; beyond it, the client is treated as gone.
  static constexpr size_t kMaxPendingStdin = 4 << 20;
  static constexpr size_t kMaxResizeMessage = 4096;

  absl::Mutex mu_;
  std::string pending_ ABSL_GUARDED_BY(mu_);
  bool stdin_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  std::string resize_buffer_ ABSL_GUARDED_BY(mu_);
  unsigned width_ ABSL_GUARDED_BY(mu_) = 0, height_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void(std::string_view)> sink_ ABSL_GUARDED_BY(mu_);
  std::function<void()> close_ ABSL_GUARDED_BY(mu_);
  std::function<void(unsigned, unsigned)> resize_ ABSL_GUARDED_BY(mu_);
  std::function<void()> gone_fn_ ABSL_GUARDED_BY(mu_);
};

// One binary message of the WebSocket channel protocols (v4/v5.channel.k8s.io) from the client:
// its channel byte, then the data. Stdin and resize go to `in`; v5's close message (255, then the
// channel) ends stdin; anything else (an empty message, output channels, unknown channels) is
// ignored.
void DeliverChannelMessage(std::string_view message, bool v5, Inbound& in);

}  // namespace berth::cri::streaming
