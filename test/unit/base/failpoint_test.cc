#include "base/failpoint.h"

#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace berth {
namespace {

TEST(FailpointTest, NamesAreUnique) {
  const std::vector<std::string>& all = AllFailpoints();
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), all.size());
}

#ifdef BERTH_FAILPOINTS
TEST(FailpointTest, ErrorModeFailsTheStepAsManyTimesAsAsked) {
  ArmFailpoints("sandbox.run.netns_created=error*2,container.start.begin=error");
  absl::Status hit = Failpoint("sandbox.run.netns_created");
  EXPECT_TRUE(absl::IsInternal(hit));
  EXPECT_EQ(hit.message(), "failpoint sandbox.run.netns_created");
  EXPECT_FALSE(Failpoint("sandbox.run.netns_created").ok());
  EXPECT_TRUE(Failpoint("sandbox.run.netns_created").ok());
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(Failpoint("container.start.begin").ok());
  EXPECT_TRUE(Failpoint("sandbox.run.pause_created").ok());
  ArmFailpoints("");
  EXPECT_TRUE(Failpoint("container.start.begin").ok());
}

TEST(FailpointTest, DelayModeHoldsTheStepThenLetsItGoOn) {
  ArmFailpoints("container.create.spec_written=delay:200*1,container.start.begin=delay:soon");
  const absl::Time before = absl::Now();
  EXPECT_TRUE(Failpoint("container.create.spec_written").ok());
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(200));
  EXPECT_TRUE(Failpoint("container.create.spec_written").ok());  // once only
  EXPECT_TRUE(Failpoint("container.start.begin").ok());           // a bad delay arms nothing
  ArmFailpoints("");
}

TEST(FailpointTest, KillModeKillsTheProcess) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ArmFailpoints("image.pull.layer_fetched=kill");
    (void)Failpoint("image.pull.layer_fetched");
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

TEST(FailpointDeathTest, AnUnlistedNameIsABug) {
  ArmFailpoints("container.start.begin=error");
  EXPECT_DEATH((void)Failpoint("no.such.failpoint"), "not in AllFailpoints");
}
#endif

}  // namespace
}  // namespace berth
