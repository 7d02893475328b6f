#include "pod/exit_watcher.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

using ::testing::ElementsAre;

class ExitWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-exit-watcher-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The names reported so far, once there are `n` (or after 10 s).
  std::vector<std::string> AwaitNames(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return names_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
    return names_;
  }

  ExitWatcher::Callbacks Record() {
    return {.on_exit =
                [this](const std::string& name) {
                  absl::MutexLock lock(&mu_);
                  names_.push_back(name);
                },
            .on_tick = [this] { ++ticks_; }};
  }

  std::string dir_;
  absl::Mutex mu_;
  std::vector<std::string> names_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> ticks_ = 0;
};

TEST_F(ExitWatcherTest, ReportsEachCompletedFileButNotTemporaryOnes) {
  ExitWatcher watcher(dir_ + "/exits", std::chrono::hours(1), Record());
  watcher.Start();  // creates the directory
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/exits/ctr1", "0").ok());  // a rename
  std::ofstream(dir_ + "/exits/ctr2.tmp") << "1";
  std::ofstream(dir_ + "/exits/ctr2") << "137";  // written in place
  EXPECT_THAT(AwaitNames(2), ElementsAre("ctr1", "ctr2"));
  EXPECT_EQ(ticks_, 0);
}

TEST_F(ExitWatcherTest, TicksComeWithoutEvents) {
  ExitWatcher watcher(dir_ + "/exits", std::chrono::milliseconds(10), Record());
  watcher.Start();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ticks_ < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_GE(ticks_, 3);
}

TEST_F(ExitWatcherTest, StopReturnsAtOnceAndNothingIsReportedAfterIt) {
  ExitWatcher watcher(dir_ + "/exits", std::chrono::hours(1), Record());
  watcher.Start();
  const auto t0 = std::chrono::steady_clock::now();
  watcher.Stop();
  // Woken by its eventfd, not by a timeout (an hour here).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/exits/late", "0").ok());
  watcher.Stop();  // idempotent
  absl::MutexLock lock(&mu_);
  EXPECT_TRUE(names_.empty());
}

}  // namespace
}  // namespace berth::pod
