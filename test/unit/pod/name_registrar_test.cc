#include "pod/name_registrar.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

RequestOrigin Request(const std::string& fingerprint, bool gone = false) {
  return {.fingerprint = fingerprint, .gone = [gone] { return gone; }};
}

TEST(NameRegistrarTest, AHeldNameIsRefusedNamingItsHolder) {
  NameRegistrar names("container", std::chrono::minutes(1));
  ASSERT_EQ(*names.Reserve("web", "id1", Request("a")), std::nullopt);
  EXPECT_TRUE(names.Complete("web", "id1", Request("a")));
  absl::StatusOr<std::optional<std::string>> again = names.Reserve("web", "id2", Request("a"));
  EXPECT_TRUE(absl::IsAlreadyExists(again.status()));
  EXPECT_THAT(again.status().message(), HasSubstr("reserved by container id1"));
  EXPECT_FALSE(names.IsKept("id1"));
}

TEST(NameRegistrarTest, AReleasedOrErasedNameIsFreeAgain) {
  NameRegistrar names("container", std::chrono::minutes(1));
  ASSERT_EQ(*names.Reserve("web", "id1", Request("a")), std::nullopt);
  names.Release("web", "id1");
  ASSERT_EQ(*names.Reserve("web", "id2", Request("a")), std::nullopt);
  names.Complete("web", "id2", Request("a"));
  names.Erase("web", "id1");  // not the holder: nothing happens
  EXPECT_FALSE(names.Reserve("web", "id3", Request("a")).ok());
  names.Erase("web", "id2");
  EXPECT_EQ(*names.Reserve("web", "id3", Request("a")), std::nullopt);
}

TEST(NameRegistrarTest, AResultWhoseCallerLeftIsKeptForTheSameRequestOnly) {
  NameRegistrar names("pod sandbox", std::chrono::minutes(1));
  ASSERT_EQ(*names.Reserve("pod", "id1", Request("a")), std::nullopt);
  EXPECT_FALSE(names.Complete("pod", "id1", Request("a", /*gone=*/true)));
  EXPECT_TRUE(names.IsKept("id1"));

  absl::StatusOr<std::optional<std::string>> other = names.Reserve("pod", "id2", Request("b"));
  EXPECT_TRUE(absl::IsAlreadyExists(other.status()));
  EXPECT_THAT(other.status().message(), HasSubstr("different config"));
  EXPECT_TRUE(names.IsKept("id1"));

  EXPECT_THAT(*names.Reserve("pod", "id3", Request("a")), Optional(std::string("id1")));
  EXPECT_FALSE(names.IsKept("id1"));
  // Claimed: it is held like any other now.
  EXPECT_TRUE(absl::IsAlreadyExists(names.Reserve("pod", "id4", Request("a")).status()));
}

TEST(NameRegistrarTest, KeptResultsExpireAfterKeepFor) {
  NameRegistrar names("container", std::chrono::seconds(0));
  ASSERT_EQ(*names.Reserve("a", "id1", Request("x")), std::nullopt);
  names.Complete("a", "id1", Request("x", /*gone=*/true));
  ASSERT_EQ(*names.Reserve("b", "id2", Request("x")), std::nullopt);
  names.Complete("b", "id2", Request("x"));
  EXPECT_THAT(names.Expired(), ElementsAre("id1"));
  names.Erase("a", "id1");
  EXPECT_THAT(names.Expired(), IsEmpty());
}

TEST(NameRegistrarTest, ARetryWaitsForTheCreateUnderWayAndGetsItsResult) {
  NameRegistrar names("container", std::chrono::minutes(1));
  ASSERT_EQ(*names.Reserve("web", "id1", Request("a")), std::nullopt);
  absl::Notification waiting;
  absl::StatusOr<std::optional<std::string>> retry;
  std::thread retrying([&] {
    waiting.Notify();
    retry = names.Reserve("web", "id2", Request("a"));
  });
  waiting.WaitForNotification();
  // The first caller has gone by the time its create finishes.
  names.Complete("web", "id1", Request("a", /*gone=*/true));
  retrying.join();
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_THAT(*retry, Optional(std::string("id1")));
}

TEST(NameRegistrarTest, ARetryOfAFailedCreateCreatesAnew) {
  NameRegistrar names("container", std::chrono::minutes(1));
  ASSERT_EQ(*names.Reserve("web", "id1", Request("a")), std::nullopt);
  absl::StatusOr<std::optional<std::string>> retry;
  std::thread retrying([&] { retry = names.Reserve("web", "id2", Request("a")); });
  names.Release("web", "id1");
  retrying.join();
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(*retry, std::nullopt);
}

TEST(NameRegistrarTest, AnotherRequestDoesNotWaitForACreateUnderWay) {
  NameRegistrar names("container", std::chrono::minutes(1));
  ASSERT_EQ(*names.Reserve("web", "id1", Request("a")), std::nullopt);
  absl::StatusOr<std::optional<std::string>> other = names.Reserve("web", "id2", Request("b"));
  EXPECT_TRUE(absl::IsAlreadyExists(other.status()));
  EXPECT_THAT(other.status().message(), HasSubstr("still creating"));
}

TEST(NameRegistrarTest, ARetryWhoseCallerGoesStopsWaiting) {
  NameRegistrar names("container", std::chrono::minutes(1));
  ASSERT_EQ(*names.Reserve("web", "id1", Request("a")), std::nullopt);
  std::atomic<bool> gone = false;
  absl::StatusOr<std::optional<std::string>> retry;
  std::thread retrying([&] {
    retry = names.Reserve("web", "id2", {.fingerprint = "a", .gone = [&] { return gone.load(); }});
  });
  gone = true;
  retrying.join();
  EXPECT_TRUE(absl::IsCancelled(retry.status())) << retry.status();
}

}  // namespace
}  // namespace berth::pod
