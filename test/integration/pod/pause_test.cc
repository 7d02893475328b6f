// berth-pause as a pod's PID 1: it reaps orphans and exits 0 on SIGTERM and SIGINT.

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace {

const char* Pause() { return BERTH_PAUSE_PATH; }

int WaitExit(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 500; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

// Starts berth-pause as PID 1 of a new PID namespace (via unshare --fork), returning the pid of
// unshare; the pause process is its only child.
pid_t StartInPidNamespace() {
  const pid_t pid = fork();  // a single-threaded test process: fork is fine here
  if (pid == 0) {
    execl("/usr/bin/unshare", "unshare", "--pid", "--fork", "--kill-child", Pause(), nullptr);
    _exit(127);
  }
  return pid;
}

// Waits until `pid` has a handler for `sig` (SigCgt in /proc/<pid>/status): before that, as PID 1
// of its namespace, the signal would be dropped.
bool WaitForHandler(pid_t pid, int sig) {
  for (int i = 0; i < 500; ++i) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("SigCgt:", 0) == 0 &&
          (std::stoull(line.substr(7), nullptr, 16) >> (sig - 1)) & 1) {
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

pid_t ChildOf(pid_t parent) {
  for (int i = 0; i < 500; ++i) {
    std::ifstream children("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                           "/children");
    pid_t child = 0;
    if (children >> child) return child;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

TEST(PauseTest, ExitsZeroOnTermAndInt) {
  if (geteuid() != 0) GTEST_SKIP() << "PID namespaces need root";
  for (int sig : {SIGTERM, SIGINT}) {
    const pid_t unshare = StartInPidNamespace();
    const pid_t pause = ChildOf(unshare);
    ASSERT_GT(pause, 0);
    // As PID 1 of its namespace, a signal without a handler would be dropped.
    std::ifstream status("/proc/" + std::to_string(pause) + "/status");
    std::string line;
    bool pid1 = false;
    while (std::getline(status, line)) {
      if (line.rfind("NSpid:", 0) == 0) pid1 = line.substr(line.rfind('\t') + 1) == "1";
    }
    EXPECT_TRUE(pid1);
    ASSERT_TRUE(WaitForHandler(pause, sig));
    ASSERT_EQ(kill(pause, sig), 0);
    EXPECT_EQ(WaitExit(unshare), 0) << "signal " << sig;
  }
}

TEST(PauseTest, ReapsOrphans) {
  if (geteuid() != 0) GTEST_SKIP() << "PID namespaces need root";
  const pid_t unshare = StartInPidNamespace();
  const pid_t pause = ChildOf(unshare);
  ASSERT_GT(pause, 0);
  ASSERT_TRUE(WaitForHandler(pause, SIGCHLD));
  // A process in the pod's PID namespace whose parent dies: it is re-parented to berth-pause,
  // which must reap it when it exits.
  const std::string cmd = "nsenter --target " + std::to_string(pause) +
                          " --pid --mount -- /bin/sh -c '(sleep 0.2 &) ; true'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  // The orphan lives 0.2 s; then berth-pause must have reaped it (no child, not even a zombie).
  std::string left = "not read";
  for (int i = 0; i < 500 && !left.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream children("/proc/" + std::to_string(pause) + "/task/" + std::to_string(pause) +
                           "/children");
    left.clear();
    std::getline(children, left);
  }
  EXPECT_EQ(left, "") << "zombies or children left under berth-pause";
  ASSERT_TRUE(WaitForHandler(pause, SIGTERM));
  kill(pause, SIGTERM);
  EXPECT_EQ(WaitExit(unshare), 0);
}

TEST(PauseTest, RejectsArgumentsAndPrintsVersion) {
  const std::string version = std::string(Pause()) + " -v > /dev/null";
  EXPECT_EQ(std::system(version.c_str()), 0);
  const std::string bad = std::string(Pause()) + " extra 2> /dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

}  // namespace
