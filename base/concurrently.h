#pragma once

#include <system_error>
#include <thread>

#include "absl/functional/function_ref.h"

namespace berth {

// Runs `side` on a thread of its own while `here` runs on this one, and returns once both are
// done. Without a thread to be had (the process is at its limit), runs `side`, then `here`, on
// this thread: slower, never a crash.
inline void Concurrently(absl::FunctionRef<void()> side, absl::FunctionRef<void()> here) {
  std::thread t;
  try {
    t = std::thread([&side] { side(); });
  } catch (const std::system_error&) {
    side();
  }
  here();
  if (t.joinable()) t.join();
}

}  // namespace berth
