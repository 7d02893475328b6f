// The writable layers' usage cache: calls get the last walk's figures; only the first call for a
// layer walks it, the cache's own thread walks the others, and forgotten layers stop being walked.

#include "image/usage_cache.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "test/lib/eventually.h"

namespace berth::image {
namespace {

using ::berth::testing::Eventually;

TEST(UsageCacheTest, CallsGetTheLastWalkAndTheCacheWalksAgainOnItsOwn) {
  std::atomic<int> walks = 0;
  std::atomic<int> walks_by_caller = 0;
  const std::thread::id caller = std::this_thread::get_id();
  UsageCache cache(std::chrono::milliseconds(50), [&](const std::string& dir) {
    if (std::this_thread::get_id() == caller) ++walks_by_caller;
    const int n = ++walks;
    return WritableUsage{.bytes = n * 1000, .inodes = dir == "/c/a" ? 1 : 2};
  });
  const UsageCache::Sample first = cache.Get("a", "/c/a");
  EXPECT_EQ(first.usage.bytes, 1000);
  EXPECT_EQ(first.usage.inodes, 1);
  EXPECT_GT(first.timestamp_ns, 0);
  // The refresher walks again; the calls never do after the first.
  UsageCache::Sample later;
  ASSERT_TRUE(Eventually([&] {
    later = cache.Get("a", "/c/a");
    return later.usage.bytes > 1000;
  }));
  EXPECT_GE(later.timestamp_ns, first.timestamp_ns);
  EXPECT_EQ(walks_by_caller, 1);
}

TEST(UsageCacheTest, ALayerNoLongerAskedForIsForgotten) {
  std::atomic<int> walks = 0;
  UsageCache cache(std::chrono::milliseconds(20), [&](const std::string&) {
    ++walks;
    return WritableUsage{};
  });
  cache.Get("gone", "/c/gone");
  // Three periods without a call: forgotten, so no more walks.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int settled = walks;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(walks, settled);
  EXPECT_LT(settled, 10);
}

}  // namespace
}  // namespace berth::image
