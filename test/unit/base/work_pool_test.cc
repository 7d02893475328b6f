#include "base/work_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/lib/eventually.h"

namespace berth {
namespace {

using berth::testing::Eventually;

TEST(WorkPoolTest, RunsEveryTask) {
  WorkPool pool({.max_threads = 4});
  std::atomic<int> ran = 0;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(pool.Submit([&] { ++ran; }).ok());
  pool.Shutdown();
  EXPECT_EQ(ran, 100);
  EXPECT_EQ(pool.threads(), 0u);
}

// Submits `n` tasks that count themselves in `started`, then wait for `release`.
void SubmitBlocked(WorkPool& pool, int n, std::atomic<int>* started, absl::Notification* release) {
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(pool.Submit([started, release] {
                      ++*started;
                      release->WaitForNotification();
                    })
                    .ok());
  }
}

TEST(WorkPoolTest, BlockedTasksDoNotHoldBackOthersUpToTheLimit) {
  // 50 stops waiting out their grace periods at once must all be under way, not in turn.
  WorkPool pool({.max_threads = 256});
  absl::Notification release;
  std::atomic<int> started = 0;
  SubmitBlocked(pool, 50, &started, &release);
  EXPECT_TRUE(Eventually([&] { return started == 50; }));
  EXPECT_EQ(pool.threads(), 50u);
  EXPECT_EQ(pool.queued(), 0u);
  release.Notify();
}

TEST(WorkPoolTest, QueuesBeyondMaxThreadsInsteadOfFailing) {
  WorkPool pool({.max_threads = 3});
  absl::Notification release;
  std::atomic<int> started = 0;
  SubmitBlocked(pool, 8, &started, &release);
  EXPECT_TRUE(Eventually([&] { return started == 3; }));
  EXPECT_EQ(pool.threads(), 3u);
  EXPECT_EQ(pool.queued(), 5u);
  EXPECT_EQ(started, 3);
  release.Notify();
  pool.Shutdown();
  EXPECT_EQ(started, 8);
}

TEST(WorkPoolTest, ReusesAnIdleWorker) {
  WorkPool pool({.max_threads = 8});
  for (int i = 0; i < 20; ++i) {
    absl::Notification done;
    ASSERT_TRUE(pool.Submit([&] { done.Notify(); }).ok());
    done.WaitForNotification();
    // The worker that ran it is back waiting for work before the next task comes.
    ASSERT_TRUE(Eventually([&] { return pool.idle() == pool.threads(); }));
  }
  EXPECT_LE(pool.threads(), 2u);
}

TEST(WorkPoolTest, IdleWorkersEnd) {
  WorkPool pool({.max_threads = 8, .idle_timeout = absl::Milliseconds(50)});
  absl::Notification release;
  std::atomic<int> started = 0;
  SubmitBlocked(pool, 4, &started, &release);
  EXPECT_TRUE(Eventually([&] { return pool.threads() == 4; }));
  release.Notify();
  EXPECT_TRUE(Eventually([&] { return pool.threads() == 0; }));
  // And it grows again on demand.
  absl::Notification ran;
  ASSERT_TRUE(pool.Submit([&] { ran.Notify(); }).ok());
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(20)));
}

TEST(WorkPoolTest, ShutdownRunsWhatIsQueuedThenRefuses) {
  WorkPool pool({.max_threads = 1});
  absl::Notification release;
  std::vector<int> order;  // written by the one worker only
  ASSERT_TRUE(pool.Submit([&] { release.WaitForNotification(); }).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool.Submit([&, i] { order.push_back(i); }).ok());
  std::thread shutdown([&] { pool.Shutdown(); });
  release.Notify();
  shutdown.join();
  EXPECT_THAT(order, ::testing::ElementsAre(0, 1, 2, 3, 4));
  absl::Status late = pool.Submit([] {});
  EXPECT_EQ(late.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(late.message()), ::testing::HasSubstr("shutting down"));
}

TEST(WorkPoolTest, ATaskCanSubmitATask) {
  WorkPool pool({.max_threads = 2});
  absl::Notification inner;
  ASSERT_TRUE(pool.Submit([&] { ASSERT_TRUE(pool.Submit([&] { inner.Notify(); }).ok()); }).ok());
  EXPECT_TRUE(inner.WaitForNotificationWithTimeout(absl::Seconds(20)));
}

}  // namespace
}  // namespace berth
