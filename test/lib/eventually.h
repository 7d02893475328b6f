#pragma once

#include <chrono>
#include <thread>

namespace berth::testing {

// Polls `done` every `interval` until it holds or `timeout` passes; its last answer. Tests wait
// for state this way rather than sleeping.
template <typename F>
bool Eventually(F done, std::chrono::milliseconds timeout = std::chrono::seconds(20),
                std::chrono::milliseconds interval = std::chrono::milliseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(interval);
  }
  return done();
}

}  // namespace berth::testing
