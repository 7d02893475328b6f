#include "base/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth {
namespace {

using ::testing::HasSubstr;

ProcessSpec Sh(const std::string& script) {
  return ProcessSpec{.argv = {"/bin/sh", "-c", script}, .env = {"PATH=/usr/bin:/bin", "X=1"}};
}

TEST(RunProcessTest, CapturesOutputsAndExitCode) {
  ProcessSpec spec = Sh("read line; echo \"out:$line:$X\"; echo err >&2; exit 3");
  spec.stdin_data = "hello\n";
  absl::StatusOr<ProcessResult> r = RunProcess(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data, "out:hello:1\n");
  EXPECT_EQ(r->stderr_data, "err\n");
}

TEST(RunProcessTest, SignalIsReportedAs128Plus) {
  absl::StatusOr<ProcessResult> r = RunProcess(Sh("kill -TERM $$"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 128 + SIGTERM);
}

TEST(RunProcessTest, HelperThatIgnoresItsStdinDoesNotKillUs) {
  // The test process does not ignore SIGPIPE: a write to the closed pipe must not raise it.
  ProcessSpec spec = Sh("exit 0");
  spec.stdin_data = std::string(4 << 20, 'x');
  absl::StatusOr<ProcessResult> r = RunProcess(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
}

TEST(RunProcessTest, TimeoutKillsTheWholeGroup) {
  ProcessSpec spec = Sh("sleep 30 & sleep 30; echo never");
  spec.timeout = std::chrono::milliseconds(200);
  absl::StatusOr<ProcessResult> r = RunProcess(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/bin/sh"));
}

TEST(RunProcessTest, OnlyStdioIsInherited) {
  absl::StatusOr<ProcessResult> r = RunProcess(Sh("ls /proc/self/fd | wc -l"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data, "4\n");  // 0, 1, 2 and the one ls opens
}

TEST(RunProcessTest, NiceLowersTheHelpersPriorityOnly) {
  errno = 0;
  const int ours = ::getpriority(PRIO_PROCESS, ::gettid());
  ASSERT_EQ(errno, 0);
  ProcessSpec spec = Sh("cut -d' ' -f19 /proc/$$/stat; sh -c 'cut -d\" \" -f19 /proc/$$/stat'");
  spec.nice = 5;
  absl::StatusOr<ProcessResult> r = RunProcess(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string expected = std::to_string(std::min(19, ours + 5)) + "\n";
  EXPECT_EQ(r->stdout_data, expected + expected);  // the helper, and what it starts
  EXPECT_EQ(::getpriority(PRIO_PROCESS, ::gettid()), ours);  // not the caller
  spec.nice = 0;
  r = RunProcess(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, absl::StrCat(ours, "\n", ours, "\n"));
}

TEST(SpawnProcessTest, RunsInTheGivenDirectory) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  absl::StatusOr<pid_t> pid =
      SpawnProcess({.argv = {"/bin/sh", "-c", "pwd"}, .stdout_fd = fds[1], .cwd = "/usr/share"});
  ::close(fds[1]);
  ASSERT_TRUE(pid.ok()) << pid.status();
  char buf[64] = {};
  const ssize_t n = ::read(fds[0], buf, sizeof buf - 1);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(*pid, &status, 0);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "/usr/share\n");
}

TEST(RunProcessTest, OutputIsCapped) {
  ProcessSpec spec = Sh("head -c 100000 /dev/zero");
  spec.output_limit = 1000;
  absl::StatusOr<ProcessResult> r = RunProcess(spec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data.size(), 1000u);
}

TEST(RunProcessTest, MissingBinary) {
  absl::StatusOr<ProcessResult> r = RunProcess({.argv = {"/nonexistent/tool"}});
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/nonexistent/tool"));
}

TEST(TailTest, KeepsTheEnd) {
  EXPECT_EQ(Tail("abc\n\n"), "abc");
  EXPECT_EQ(Tail("0123456789", 4), "...6789");
}

}  // namespace
}  // namespace berth
