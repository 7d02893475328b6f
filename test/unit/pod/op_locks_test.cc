#include "pod/op_locks.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

TEST(SlotsTest, ATakerWaitsUntilASlotIsGivenBack) {
  Slots slots(2);
  std::unique_ptr<Slots::Held> first = slots.Take();
  std::unique_ptr<Slots::Held> second = slots.Take();
  absl::Notification third_taken;
  std::thread third([&] {
    std::unique_ptr<Slots::Held> held = slots.Take();
    third_taken.Notify();
  });
  // Both slots are held: the third taker cannot get one, however long it waits.
  EXPECT_FALSE(third_taken.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  first.reset();
  EXPECT_TRUE(third_taken.WaitForNotificationWithTimeout(absl::Seconds(30)));
  third.join();
  // The third gave its slot back when it ended: two can be held again.
  std::unique_ptr<Slots::Held> again = slots.Take();
}

TEST(SlotsTest, NeverMoreHoldersThanSlots) {
  Slots slots(3);
  std::atomic<int> holding = 0;
  std::atomic<int> most = 0;
  std::vector<std::thread> takers;
  for (int i = 0; i < 16; ++i) {
    takers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        std::unique_ptr<Slots::Held> held = slots.Take();
        const int now = ++holding;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();
        --holding;
      }
    });
  }
  for (std::thread& t : takers) t.join();
  EXPECT_LE(most.load(), 3);
  EXPECT_GE(most.load(), 1);
}

}  // namespace
}  // namespace berth::pod
