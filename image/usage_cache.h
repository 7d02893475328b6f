#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "image/rootfs.h"

namespace berth::image {

// The disk usage of containers' writable layers, which kubelet asks for in every stats call
// (ListContainerStats, ListPodSandboxStats, every 10 to 15 s for every container). Walking a
// layer costs in proportion to its files, so a call never walks: a thread of its own walks the
// layers asked for every `period` (as containerd's snapshot syncer does) and calls get the last
// figures with the time they were taken. Only the first call for a layer walks it. Layers no
// longer asked for (removed containers) are forgotten after a few periods.
class UsageCache {
 public:
  struct Sample {
    WritableUsage usage;
    int64_t timestamp_ns = 0;  // when it was walked, Unix time
  };
  using Walk = std::function<WritableUsage(const std::string& dir)>;

  explicit UsageCache(std::chrono::milliseconds period, Walk walk = UpperUsage);
  ~UsageCache();  // stops the thread
  UsageCache(const UsageCache&) = delete;
  UsageCache& operator=(const UsageCache&) = delete;

  // The usage of the writable layer under container directory `dir`, known by `id`.
  Sample Get(const std::string& id, const std::string& dir);

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string dir;
    Sample sample;
    Clock::time_point asked;
  };
  Sample Take(const std::string& dir) const;
  void Refresh();

  const std::chrono::milliseconds period_;
  const Walk walk_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::map<std::string, Entry> entries_;
  std::thread refresher_;  // last: it uses the members above
};

}  // namespace berth::image
