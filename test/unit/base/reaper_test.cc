// The subreaper's bookkeeping with real processes: what a child leaves running becomes ours, and
// only the adopted children no one waits for are reaped.

#include "base/reaper.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "base/process.h"
#include "gtest/gtest.h"
#include "test/lib/eventually.h"

namespace berth {
namespace {

using ::berth::testing::Eventually;

// The state letter of process `pid` ('Z' for a zombie), or 0 if there is none.
char StateOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? 0 : line[paren + 2];
}

// Starts a shell that backgrounds `command` (a child of ours once the shell is gone) and reaps
// the shell. Returns the adopted process's pid.
pid_t Orphan(const std::string& command) {
  absl::StatusOr<ProcessResult> shell =
      RunProcess({.argv = {"/bin/sh", "-c", command + " >/dev/null 2>&1 & echo $!"},
                  .timeout = std::chrono::seconds(10)});
  if (!shell.ok() || shell->exit_code != 0) return -1;
  return std::stoi(shell->stdout_data);
}

TEST(ReaperTest, ReapsOnlyAdoptedChildrenNoOneWaitsFor) {
  ASSERT_TRUE(BecomeSubreaper().ok());
  // They outlive the shell, which would otherwise reap them itself.
  const pid_t adopted = Orphan("exec /bin/sleep 0.5");
  const pid_t claimed = Orphan("exec /bin/sleep 0.5");
  ASSERT_GT(adopted, 0);
  ASSERT_GT(claimed, 0);
  ClaimChild(claimed);
  absl::StatusOr<pid_t> spawned = SpawnProcess({.argv = {"/bin/true"}});
  ASSERT_TRUE(spawned.ok()) << spawned.status();
  for (pid_t pid : {adopted, claimed, *spawned}) {
    EXPECT_TRUE(Eventually([&] { return StateOf(pid) == 'Z'; })) << pid << " is not ours to wait for";
  }

  bool deferred = false;
  {
    // Young, while a claim is pending: the claimer may be about to read its pid.
    ClaimPending pending;
    EXPECT_EQ(ReapAdoptedChildren(std::chrono::seconds(3600), &deferred), 0);
    EXPECT_TRUE(deferred);
    EXPECT_EQ(StateOf(adopted), 'Z');
  }
  EXPECT_EQ(ReapAdoptedChildren(std::chrono::seconds(3600), &deferred), 1);
  EXPECT_FALSE(deferred);
  EXPECT_EQ(StateOf(adopted), 0);
  // The others are left to whoever waits for them, and they get the exit status.
  EXPECT_EQ(DecodeWaitStatus(ReapChild(claimed)), 0);
  EXPECT_EQ(DecodeWaitStatus(ReapChild(*spawned)), 0);
  EXPECT_EQ(ReapChild(*spawned), -1);
}

TEST(ReaperTest, AgeOfAProcess) {
  std::optional<std::chrono::milliseconds> self = ProcessAge(::getpid());
  ASSERT_TRUE(self.has_value());
  EXPECT_GE(self->count(), 0);
  EXPECT_LT(*self, std::chrono::hours(1));
  EXPECT_FALSE(ProcessAge(-1).has_value());
}

}  // namespace
}  // namespace berth
