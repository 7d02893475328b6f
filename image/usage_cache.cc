#include "image/usage_cache.h"

#include <utility>
#include <vector>

#include "absl/time/clock.h"

namespace berth::image {
namespace {

// Periods without a call after which a layer is forgotten.
constexpr int kForgetAfter = 3;

}  // namespace

UsageCache::UsageCache(std::chrono::milliseconds period, Walk walk)
    : period_(period), walk_(std::move(walk)), refresher_([this] { Refresh(); }) {}

UsageCache::~UsageCache() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  refresher_.join();
}

UsageCache::Sample UsageCache::Take(const std::string& dir) const {
  return Sample{.usage = walk_(dir), .timestamp_ns = absl::ToUnixNanos(absl::Now())};
}

UsageCache::Sample UsageCache::Get(const std::string& id, const std::string& dir) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) {
      it->second.asked = Clock::now();
      return it->second.sample;
    }
  }
  const Sample sample = Take(dir);
  std::lock_guard lock(mu_);
  entries_.insert_or_assign(id, Entry{.dir = dir, .sample = sample, .asked = Clock::now()});
  return sample;
}

void UsageCache::Refresh() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait_for(lock, period_, [&] { return stop_; });
    if (stop_) return;
    const Clock::time_point forget = Clock::now() - kForgetAfter * period_;
    std::erase_if(entries_, [&](const auto& e) { return e.second.asked < forget; });
    std::vector<std::pair<std::string, std::string>> layers;
    for (const auto& [id, entry] : entries_) layers.emplace_back(id, entry.dir);
    lock.unlock();
    for (const auto& [id, dir] : layers) {
      const Sample sample = Take(dir);
      std::lock_guard relock(mu_);
      if (stop_) return;
      if (auto it = entries_.find(id); it != entries_.end()) it->second.sample = sample;
    }
    lock.lock();
  }
}

}  // namespace berth::image
