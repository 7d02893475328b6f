// The conmon contract with real runc: create, logs in the CRI format, exit files, OOM, attach,
// ctl, exec with output, exit codes and timeouts. Runs against berth-conmon and Debian's conmon,
// which must behave the same for everything berthd relies on.

#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/mount.h"
#include "base/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "conmon/pod_request.h"
#include "pod/exec_process.h"
#include "pod/monitor.h"
#include "pod/runtime.h"
#include "test/lib/eventually.h"

namespace berth::pod {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::berth::testing::Eventually;

constexpr char kBusybox[] = "/bin/busybox";


nlohmann::json Process(std::vector<std::string> args, bool terminal = false) {
  return {{"terminal", terminal},
          {"user", {{"uid", 0}, {"gid", 0}}},
          {"args", args},
          {"env", {"PATH=/bin"}},
          {"cwd", "/"},
          {"capabilities", {{"bounding", {"CAP_KILL"}}, {"effective", {"CAP_KILL"}},
                            {"permitted", {"CAP_KILL"}}}},
          {"noNewPrivileges", true}};
}

// Which monitor: its binary, and whether one keeps a whole pod (berth-conmon's --pod-monitor).
struct MonitorKind {
  std::string path;
  bool per_pod = false;
};
void PrintTo(const MonitorKind& k, std::ostream* os) {
  *os << k.path << (k.per_pod ? " --pod-monitor" : "");
}

class MonitorTest : public ::testing::TestWithParam<MonitorKind> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
    for (const char* tool : {"/usr/sbin/runc", kBusybox}) {
      if (::access(tool, X_OK) != 0) GTEST_SKIP() << tool << " is not installed";
    }
    if (::access(GetParam().path.c_str(), X_OK) != 0) {
      GTEST_SKIP() << GetParam().path << " is not installed";
    }
    char tmpl[] = "/tmp/berth-monitor-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(MakeDirs(dir_ + "/rootfs/bin").ok());
    for (const char* d : {"proc", "dev", "sys", "tmp"}) ASSERT_TRUE(MakeDirs(dir_ + "/rootfs/" + d).ok());
    std::filesystem::copy_file(kBusybox, dir_ + "/rootfs/bin/busybox");
    for (const char* tool : {"sh", "echo", "sleep", "cat", "printf", "head", "tr"}) {
      std::filesystem::create_symlink("busybox", dir_ + "/rootfs/bin/" + tool);
    }
    runtime_ = std::make_unique<RuncRuntime>("/usr/sbin/runc", dir_ + "/runc", false);
    monitor_ = std::make_unique<ConmonMonitor>(GetParam().path, runtime_.get(), false,
                                               std::chrono::seconds(30), GetParam().per_pod,
                                               /*berth=*/IsBerthConmon());
  }

  void TearDown() override {
    if (dir_.empty()) return;
    for (const std::string& id : ids_) (void)runtime_->Delete(id, /*force=*/true);
    // A pod's monitor ends with the last of its containers, and takes its socket along.
    if (GetParam().per_pod && !ids_.empty()) {
      EXPECT_TRUE(Eventually([&] { return ::access(PodMonitorPidFile().c_str(), F_OK) != 0; }))
          << "the pod monitor outlived its containers";
      EXPECT_FALSE(std::filesystem::exists(PodDir() + "/pod.sock"));
    }
    std::filesystem::remove_all(dir_);
  }

  bool IsBerthConmon() const { return absl::EndsWith(GetParam().path, "/berth-conmon"); }
  std::string PodDir() const { return dir_ + "/pod"; }
  std::string PodMonitorPidFile() const { return PodDir() + "/pod-monitor.pid"; }

  // Creates a container running `args` (not started). Returns its pid.
  // Both monitors' tests run in parallel, and runc's default cgroup is /<id>: ids must be unique.
  std::string Id(const std::string& name) const { return absl::StrCat(name, "-", ::getpid()); }

  absl::StatusOr<pid_t> Create(const std::string& id, std::vector<std::string> args,
                               nlohmann::json extra_linux = nlohmann::json::object(),
                               bool tty = false, bool stdin = false) {
    const std::string bundle = absl::StrCat(dir_, "/", id);
    RETURN_IF_ERROR(MakeDirs(bundle));
    nlohmann::json linux_section = {{"namespaces", {{{"type", "pid"}}, {{"type", "mount"}},
                                                    {{"type", "ipc"}}, {{"type", "uts"}}}}};
    linux_section.update(extra_linux);
    nlohmann::json spec = {
        {"ociVersion", "1.0.2"},
        {"process", Process(std::move(args), tty)},
        {"root", {{"path", dir_ + "/rootfs"}, {"readonly", true}}},
        {"mounts", {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
                    {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
                     {"options", {"nosuid", "mode=755"}}},
                    {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
                     {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666"}}}}},
        {"linux", linux_section}};
    RETURN_IF_ERROR(WriteFileAtomic(bundle + "/config.json", spec.dump()));
    ids_.push_back(id);
    return monitor_->Create({.id = id,
                             .name = id,
                             .bundle = bundle,
                             .log_path = LogPath(id),
                             .exit_dir = dir_ + "/exits",
                             .persist_dir = dir_ + "/persist/" + id,
                             .socket_dir = dir_ + "/s",
                             .tty = tty,
                             .stdin = stdin,
                             .stdin_once = true,
                             .pod_id = Id("pod"),
                             .pod_dir = PodDir(),
                             .start = start_});
  }

  std::string LogPath(const std::string& id) const { return absl::StrCat(dir_, "/logs/", id, ".log"); }
  std::string ExitFile(const std::string& id) const { return absl::StrCat(dir_, "/exits/", id); }

  // Waits for the exit file and returns its contents.
  std::string AwaitExit(const std::string& id) {
    EXPECT_TRUE(Eventually([&] { return ::access(ExitFile(id).c_str(), F_OK) == 0; }));
    absl::StatusOr<std::string> text = ReadFile(ExitFile(id));
    return text.ok() ? *text : "";
  }

  absl::StatusOr<ExecResult> Exec(const std::string& id, std::vector<std::string> args,
                                  int timeout = 0, size_t output_max = 16 << 20) {
    last_exec_dir_ = absl::StrCat(dir_, "/exec-", exec_count_++);
    RETURN_IF_ERROR(MakeDirs(last_exec_dir_));
    return monitor_->Exec({.container_id = id,
                           .process_json = Process(std::move(args)).dump(),
                           .work_dir = last_exec_dir_,
                           .timeout = std::chrono::seconds(timeout),
                           .output_max = output_max});
  }

  std::string dir_;
  std::vector<std::string> ids_;
  std::unique_ptr<RuncRuntime> runtime_;
  std::unique_ptr<ConmonMonitor> monitor_;
  int exec_count_ = 0;
  std::string last_exec_dir_;
  bool start_ = false;  // Create asks the monitor to start the container too
};

TEST_P(MonitorTest, WritesTheCriLogAndTheExitCode) {
  absl::StatusOr<pid_t> pid =
      Create(Id("logs"), {"sh", "-c", "echo hello; echo oops >&2; printf 'no newline'; exit 3"});
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_GT(*pid, 0);
  ASSERT_TRUE(runtime_->Start(Id("logs")).ok());
  EXPECT_EQ(AwaitExit(Id("logs")), "3");
  absl::StatusOr<std::string> exit_copy = ReadFile(dir_ + "/persist/" + Id("logs") + "/exit");
  ASSERT_TRUE(exit_copy.ok());
  EXPECT_EQ(*exit_copy, "3");
  absl::StatusOr<std::string> log = ReadFile(LogPath(Id("logs")));
  ASSERT_TRUE(log.ok()) << log.status();
  const std::string ts =  // POSIX extended regex: no \d
      "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}(Z|[+-][0-9]{2}:[0-9]{2})";
  EXPECT_THAT(*log, MatchesRegex(absl::StrCat("(", ts, " std(out|err) [FP] [^\n]*\n)+")));
  EXPECT_THAT(*log, HasSubstr(" stdout F hello\n"));
  EXPECT_THAT(*log, HasSubstr(" stderr F oops\n"));
  EXPECT_THAT(*log, HasSubstr(" stdout P no newline\n"));
}

// berth-conmon's --run: the runtime starts the container as it makes it, and a process that is
// done before the runtime has even exited is recorded all the same.
TEST_P(MonitorTest, ACreateThatStartsRunsTheContainerAtOnce) {
  if (!IsBerthConmon()) GTEST_SKIP() << "conmon only creates";
  ASSERT_TRUE(monitor_->Starts());
  start_ = true;
  absl::StatusOr<pid_t> pid = Create(Id("run"), {"sh", "-c", "echo early; exit 4"});
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_GT(*pid, 0);
  EXPECT_EQ(AwaitExit(Id("run")), "4");  // no runtime start
  absl::StatusOr<std::string> log = ReadFile(LogPath(Id("run")));
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_THAT(*log, HasSubstr(" stdout F early\n"));
  absl::StatusOr<pid_t> running = Create(Id("runs"), {"sleep", "1000"});
  ASSERT_TRUE(running.ok()) << running.status();
  absl::StatusOr<ContainerState> state = runtime_->State(Id("runs"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->status, "running");
  ASSERT_TRUE(runtime_->Kill(Id("runs"), SIGKILL, false).ok());
  EXPECT_EQ(AwaitExit(Id("runs")), "137");
}

// A runtime process killed while its init had its own binary bound in the state directory
// (runc 1.1's "runc.XXXXXX", an exec cut short) leaves that mount: delete still removes it all.
TEST_P(MonitorTest, DeleteRemovesWhatAKilledRuntimeLeftInTheStateDirectory) {
  if (GetParam().per_pod) GTEST_SKIP() << "the runtime's part, the same with any monitor";
  ASSERT_TRUE(Create(Id("left"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("left")).ok());
  const std::string state = absl::StrCat(dir_, "/runc/", Id("left"));
  const std::string leftover = state + "/runc.Xq1Z2w";
  ASSERT_TRUE(WriteFileAtomic(leftover, "").ok());
  ASSERT_EQ(::mount("/proc/self/exe", leftover.c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  absl::Cleanup unmount = [&] { (void)::umount2(leftover.c_str(), MNT_DETACH); };
  ASSERT_TRUE(runtime_->Kill(Id("left"), SIGKILL, false).ok());
  EXPECT_EQ(AwaitExit(Id("left")), "137");
  absl::Status deleted = runtime_->Delete(Id("left"), /*force=*/true);
  EXPECT_TRUE(deleted.ok()) << deleted;
  EXPECT_FALSE(IsMountPoint(leftover));
  EXPECT_FALSE(std::filesystem::exists(state));
}

TEST_P(MonitorTest, KilledContainerExitsWith128PlusSignal) {
  ASSERT_TRUE(Create(Id("killed"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("killed")).ok());
  ASSERT_TRUE(runtime_->Kill(Id("killed"), SIGKILL, false).ok());
  EXPECT_EQ(AwaitExit(Id("killed")), "137");
}

TEST_P(MonitorTest, RuntimeFailureIsReportedWithItsMessage) {
  absl::StatusOr<pid_t> pid = Create(Id("nobinary"), {"/no/such/binary"});
  // runc reports a missing binary at create (or, for some versions, at start).
  if (pid.ok()) {
    absl::Status started = runtime_->Start(Id("nobinary"));
    EXPECT_FALSE(started.ok());
    EXPECT_THAT(started.message(), HasSubstr("no such file"));
  } else {
    EXPECT_THAT(pid.status().message(), HasSubstr("/no/such/binary"));
  }
}

TEST_P(MonitorTest, ReopensTheLogOnCtl) {
  ASSERT_TRUE(Create(Id("reopen"), {"sh", "-c", "echo one; sleep 2; echo two; sleep 1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("reopen")).ok());
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<std::string> log = ReadFile(LogPath(Id("reopen")));
    return log.ok() && log->find("one") != std::string::npos;
  }));
  std::filesystem::rename(LogPath(Id("reopen")), LogPath(Id("reopen")) + ".1");
  {
    // The ctl fifo: one line per message.
    FILE* ctl = std::fopen((dir_ + "/" + Id("reopen") + "/ctl").c_str(), "w");
    ASSERT_NE(ctl, nullptr);
    std::fputs("2 0 0\n", ctl);
    std::fclose(ctl);
  }
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<std::string> log = ReadFile(LogPath(Id("reopen")));
    return log.ok() && log->find("two") != std::string::npos;
  }));
  absl::StatusOr<std::string> fresh = ReadFile(LogPath(Id("reopen")));
  EXPECT_THAT(*fresh, Not(HasSubstr("one")));
  ASSERT_TRUE(runtime_->Kill(Id("reopen"), SIGKILL, false).ok());
  AwaitExit(Id("reopen"));
}

TEST_P(MonitorTest, AttachSocketStreamsOutputWithAStreamPrefix) {
  ASSERT_TRUE(Create(Id("attach"), {"sh", "-c", "sleep 1; while true; do echo tick; sleep 0.2; done"})
                  .ok());
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = dir_ + "/s/" + Id("attach") + "/attach";
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << strerror(errno);
  ASSERT_TRUE(runtime_->Start(Id("attach")).ok());
  char buf[8193];
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  // The runtime's own warnings may come first, on stderr (3).
  ssize_t n;
  do {
    n = ::recv(fd, buf, sizeof buf, 0);
  } while (n > 0 && buf[0] == 3);
  ASSERT_GT(n, 1);
  EXPECT_EQ(buf[0], 2);  // stdout
  EXPECT_EQ(std::string(buf + 1, static_cast<size_t>(n - 1)), "tick\n");
  ::close(fd);
  ASSERT_TRUE(runtime_->Kill(Id("attach"), SIGKILL, false).ok());
  AwaitExit(Id("attach"));
}

TEST_P(MonitorTest, ExecReturnsOutputAndExitCode) {
  ASSERT_TRUE(Create(Id("exec"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("exec")).ok());
  absl::StatusOr<ExecResult> r = Exec(Id("exec"), {"sh", "-c", "echo out; echo err >&2; exit 7"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 7);
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  absl::StatusOr<ExecResult> big = Exec(Id("exec"), {"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"});
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->exit_code, 0);
  EXPECT_EQ(big->stdout_data, std::string(100000, 'x'));
}

// A probe that prints without end (the CVE-2022-1708 pattern): the monitor stops recording at the
// bound, the file never grows past it, and what comes back is cut there.
TEST_P(MonitorTest, ExecOutputIsBoundedWhileItIsWritten) {
  ASSERT_TRUE(Create(Id("execbig"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("execbig")).ok());
  constexpr size_t kMax = 1 << 20;
  absl::StatusOr<ExecResult> r = Exec(
      Id("execbig"), {"sh", "-c", "head -c 200000000 /dev/zero | tr '\\0' x; echo done >&2"},
      /*timeout=*/120, kMax);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_GT(r->stdout_data.size(), kMax / 2);
  EXPECT_LE(r->stdout_data.size() + r->stderr_data.size(), kMax);
  EXPECT_EQ(r->stdout_data.find_first_not_of('x'), std::string::npos);
  struct stat st;
  ASSERT_EQ(::stat((last_exec_dir_ + "/exec.log").c_str(), &st), 0);
  // Upstream conmon stops after the record that crosses the bound, ours before it.
  const size_t slack = GetParam().path == BERTH_CONMON_PATH ? 0 : 64 << 10;
  EXPECT_LE(static_cast<size_t>(st.st_size), kMax + slack);
}

TEST_P(MonitorTest, ExecTimesOutAndReportsAMissingBinary) {
  ASSERT_TRUE(Create(Id("exectimeout"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("exectimeout")).ok());
  absl::StatusOr<ExecResult> slow = Exec(Id("exectimeout"), {"sleep", "100"}, /*timeout=*/1);
  EXPECT_TRUE(absl::IsDeadlineExceeded(slow.status())) << slow.status();
  absl::StatusOr<ExecResult> missing = Exec(Id("exectimeout"), {"/no/such/binary"});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("/no/such/binary"));
}

TEST_P(MonitorTest, OomKillIsRecorded) {
  // A memory limit the shell outgrows at once: the kernel's OOM killer ends it.
  absl::StatusOr<pid_t> pid = Create(
      Id("oom"), {"sh", "-c", "sleep 1; x=y; while true; do x=$x$x$x$x; done"},
      {{"resources", {{"memory", {{"limit", 8 << 20}, {"swap", 8 << 20}}}}},
       {"cgroupsPath", absl::StrCat("/berth-monitor-test-", ::getpid())}});
  ASSERT_TRUE(pid.ok()) << pid.status();
  // The monitor runs in the container's directory (a pod's in the pod's): upstream conmon writes
  // files relative to its working directory, which used to be berthd's (an "oom" file appeared).
  const std::string bundle = absl::StrCat(dir_, "/", Id("oom"));
  absl::StatusOr<std::string> monitor_pid = ReadFile(bundle + "/conmon-pidfile");
  ASSERT_TRUE(monitor_pid.ok()) << monitor_pid.status();
  std::error_code ec;
  EXPECT_EQ(std::filesystem::read_symlink(absl::StrCat("/proc/", absl::StripAsciiWhitespace(
                                                                     *monitor_pid),
                                                       "/cwd"),
                                          ec),
            GetParam().per_pod ? PodDir() : bundle);
  const bool had_oom_here = std::filesystem::exists("oom");
  ASSERT_TRUE(runtime_->Start(Id("oom")).ok());
  EXPECT_EQ(AwaitExit(Id("oom")), "137");
  EXPECT_EQ(std::filesystem::exists("oom"), had_oom_here);
  EXPECT_TRUE(Eventually([&] { return ::access((dir_ + "/persist/" + Id("oom") + "/oom").c_str(), F_OK) == 0; }));
}

INSTANTIATE_TEST_SUITE_P(Monitors, MonitorTest,
                         ::testing::Values(MonitorKind{BERTH_CONMON_PATH},
                                           MonitorKind{BERTH_CONMON_PATH, /*per_pod=*/true},
                                           MonitorKind{"/usr/bin/conmon"}),
                         [](const auto& info) {
                           return std::string(info.index == 0   ? "BerthConmon"
                                              : info.index == 1 ? "BerthConmonPod"
                                                                : "UpstreamConmon");
                         });

// What only a pod's monitor does: one process keeps every container of the pod, takes requests on
// its socket from berthd's user only, answers bad ones without harm, and ends with its last
// container.
class PodMonitorTest : public MonitorTest {
 protected:
  pid_t MonitorOf(const std::string& id) {
    absl::StatusOr<std::string> text = ReadFile(absl::StrCat(dir_, "/", id, "/conmon-pidfile"));
    return text.ok() ? std::atoi(text->c_str()) : -1;
  }

  // Sends `request` on the pod's socket as berthd would and returns the monitor's answer.
  std::string Ask(const std::string& request) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = PodDir() + "/pod.sock";
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    std::string answer;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      ::shutdown(fd, SHUT_WR);
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) answer.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return answer;
  }
};

TEST_P(PodMonitorTest, OneProcessKeepsEveryContainerAndEndsWithTheLast) {
  ASSERT_TRUE(Create(Id("pa"), {"sh", "-c", "while true; do echo a; sleep 0.1; done"}).ok());
  ASSERT_TRUE(Create(Id("pb"), {"sh", "-c", "echo b; exit 3"}).ok());
  ASSERT_TRUE(Create(Id("pc"), {"sleep", "1000"}, nlohmann::json::object(), /*tty=*/true).ok());
  const pid_t monitor = MonitorOf(Id("pa"));
  ASSERT_GT(monitor, 0);
  EXPECT_EQ(MonitorOf(Id("pb")), monitor);
  EXPECT_EQ(MonitorOf(Id("pc")), monitor);
  absl::StatusOr<std::string> own = ReadFile(PodMonitorPidFile());
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(std::atoi(own->c_str()), monitor);
  absl::StatusOr<std::string> cmdline = ReadFile(absl::StrCat("/proc/", monitor, "/cmdline"));
  ASSERT_TRUE(cmdline.ok());
  EXPECT_THAT(*cmdline, HasSubstr(Id("pod")));
  EXPECT_TRUE(MonitorAlive(monitor, Id("pb"), Id("pod")));
  EXPECT_FALSE(MonitorAlive(monitor, Id("pb"), "another-pod"));
  for (const char* name : {"pa", "pb", "pc"}) ASSERT_TRUE(runtime_->Start(Id(name)).ok());

  // One container's exit is recorded while the others go on; the monitor lets go of it by
  // removing its pid file, which is what berthd's EndMonitor waits for.
  EXPECT_EQ(AwaitExit(Id("pb")), "3");
  EXPECT_TRUE(Eventually([&] { return MonitorOf(Id("pb")) < 0; }));
  EndMonitor(absl::StrCat(dir_, "/", Id("pb"), "/conmon-pidfile"), Id("pb"));
  EXPECT_EQ(::kill(monitor, 0), 0);
  absl::StatusOr<std::string> log_b = ReadFile(LogPath(Id("pb")));
  ASSERT_TRUE(log_b.ok());
  EXPECT_THAT(*log_b, HasSubstr(" stdout F b\n"));
  const size_t before = ReadFile(LogPath(Id("pa")))->size();
  EXPECT_TRUE(Eventually([&] { return ReadFile(LogPath(Id("pa")))->size() > before; }));

  // The pod's own id (its pause container) ends the monitor; another container's does not.
  ASSERT_TRUE(runtime_->Delete(Id("pc"), /*force=*/true).ok());
  EXPECT_EQ(AwaitExit(Id("pc")), "137");
  EndMonitor(absl::StrCat(dir_, "/", Id("pc"), "/conmon-pidfile"), Id("pc"));
  EXPECT_EQ(::kill(monitor, 0), 0);
  ASSERT_TRUE(runtime_->Delete(Id("pa"), /*force=*/true).ok());
  EXPECT_EQ(AwaitExit(Id("pa")), "137");
  EXPECT_TRUE(Eventually([&] { return ::kill(monitor, 0) != 0; }));
  EXPECT_FALSE(std::filesystem::exists(PodDir() + "/pod.sock"));

  // The next container of the pod starts a new monitor.
  ASSERT_TRUE(Create(Id("pd"), {"sleep", "1000"}).ok());
  EXPECT_NE(MonitorOf(Id("pd")), monitor);
  EXPECT_GT(MonitorOf(Id("pd")), 0);
}

TEST_P(PodMonitorTest, BadRequestsAreAnsweredAndChangeNothing) {
  ASSERT_TRUE(Create(Id("pgood"), {"sleep", "1000"}).ok());
  const pid_t monitor = MonitorOf(Id("pgood"));
  ASSERT_GT(monitor, 0);
  const std::string exec_request = conmon::EncodePodRequest(
      {GetParam().path, "--cid", "x", "--runtime", "/usr/sbin/runc", "--log-path", dir_ + "/x.log",
       "--exec", "--exec-process-spec", dir_ + "/p.json", "--conmon-pidfile", dir_ + "/x.pid"});
  const std::string no_pidfile = conmon::EncodePodRequest(
      {GetParam().path, "--cid", "y", "--runtime", "/usr/sbin/runc", "--log-path", dir_ + "/y.log"});
  for (const std::string& bad :
       {std::string("garbage"), std::string("3\0only one\0"), std::string(300 << 10, 'x'),
        std::string("99999\0"), exec_request, no_pidfile,
        conmon::EncodePodRequest({GetParam().path, "--no-such-option"})}) {
    const std::string answer = Ask(bad);
    EXPECT_THAT(answer, HasSubstr("\"pid\": -1")) << bad.substr(0, 40);
    EXPECT_THAT(answer, HasSubstr("message")) << bad.substr(0, 40);
  }
  // A client that goes away in the middle of a request is forgotten.
  {
    const std::string half = Ask(std::string("12\0--cid\0"));
    EXPECT_THAT(half, HasSubstr("\"pid\": -1"));
  }
  // A create whose runtime fails is answered with the runtime's message and leaves nothing.
  absl::StatusOr<pid_t> failed = Create(Id("pbad"), {"sleep", "1"},
                                        {{"namespaces", {{{"type", "nosuchns"}}}}});
  EXPECT_FALSE(failed.ok());
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(dir_, "/", Id("pbad"), "/conmon-pidfile")));
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(dir_, "/", Id("pbad"), "/ctl")));
  for (const char* p : {"/x.pid", "/x.log", "/y.log"}) EXPECT_FALSE(std::filesystem::exists(dir_ + p));
  // The monitor goes on: its container runs and the next create works.
  EXPECT_EQ(::kill(monitor, 0), 0);
  ASSERT_TRUE(runtime_->Start(Id("pgood")).ok());
  ASSERT_TRUE(Create(Id("pnext"), {"sleep", "1000"}).ok());
  EXPECT_EQ(MonitorOf(Id("pnext")), monitor);
}

// A request names the runtime the monitor runs as root: another user is refused even when the
// socket's mode would let it connect.
TEST_P(PodMonitorTest, OnlyItsOwnUserMayAsk) {
  ASSERT_TRUE(Create(Id("pown"), {"sleep", "1000"}).ok());
  const pid_t monitor = MonitorOf(Id("pown"));
  const std::string socket = PodDir() + "/pod.sock";
  for (const std::string& path : {dir_, PodDir()}) ASSERT_EQ(::chmod(path.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(socket.c_str(), 0666), 0);
  const std::string bundle = absl::StrCat(dir_, "/", Id("pother"));
  const std::string request = conmon::EncodePodRequest(
      {GetParam().path, "--cid", Id("pother"), "--runtime", "/usr/sbin/runc", "--bundle", bundle,
       "--log-path", dir_ + "/other.log", "--conmon-pidfile", dir_ + "/other.pid"});
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(3);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) _exit(2);
    (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[256];
    _exit(::read(fd, buf, sizeof buf) > 0 ? 1 : 0);  // closed without an answer
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/other.pid"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/other.log"));
  EXPECT_EQ(::kill(monitor, 0), 0);
  EXPECT_EQ(MonitorOf(Id("pown")), monitor);
}

TEST_P(PodMonitorTest, AMonitorNobodyAsksEndsAfterItsIdleTime) {
  ASSERT_TRUE(MakeDirs(PodDir()).ok());
  const std::string socket = PodDir() + "/pod.sock";
  const pid_t child = ::fork();
  if (child == 0) {
    ::execl(GetParam().path.c_str(), GetParam().path.c_str(), "--pod-monitor", socket.c_str(),
            "--pod-id", Id("idle").c_str(), "--pod-idle-timeout", "1", "--conmon-pidfile",
            PodMonitorPidFile().c_str(), "--sync", static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(child, 0);
  EXPECT_TRUE(Eventually([&] { return std::filesystem::exists(socket); }));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(std::filesystem::exists(socket));
  EXPECT_FALSE(std::filesystem::exists(PodMonitorPidFile()));
}

INSTANTIATE_TEST_SUITE_P(Monitors, PodMonitorTest,
                         ::testing::Values(MonitorKind{BERTH_CONMON_PATH, /*per_pod=*/true}),
                         [](const auto&) { return std::string("BerthConmonPod"); });

// ExecSync as berthd runs it: the runtime straight from the calling thread, no monitor per call.
// The containers come from berth-conmon.
class RunExecSyncTest : public MonitorTest {
 protected:
  absl::StatusOr<ExecResult> DirectExec(const std::string& id, std::vector<std::string> args,
                                        int timeout = 0, size_t output_max = 16 << 20) {
    last_exec_dir_ = absl::StrCat(dir_, "/exec-", exec_count_++);
    RETURN_IF_ERROR(MakeDirs(last_exec_dir_));
    return RunExecSync(*runtime_, {.container_id = id,
                                   .process_json = Process(std::move(args)).dump(),
                                   .work_dir = last_exec_dir_,
                                   .timeout = std::chrono::seconds(timeout),
                                   .output_max = output_max});
  }
};

TEST_P(RunExecSyncTest, ReturnsOutputAndExitCode) {
  ASSERT_TRUE(Create(Id("dexec"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("dexec")).ok());
  absl::StatusOr<ExecResult> r =
      DirectExec(Id("dexec"), {"sh", "-c", "echo out; echo err >&2; exit 7"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 7);
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  // 255 is the runtime's own failure code, but here the command started and chose it.
  absl::StatusOr<ExecResult> own = DirectExec(Id("dexec"), {"sh", "-c", "exit 255"});
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->exit_code, 255);
  absl::StatusOr<ExecResult> big =
      DirectExec(Id("dexec"), {"sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x"});
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->exit_code, 0);
  EXPECT_EQ(big->stdout_data, std::string(300000, 'x'));
}

// A probe that prints without end (the CVE-2022-1708 pattern): what is kept stops at the bound
// while the rest is read and dropped, so the command runs to its end.
TEST_P(RunExecSyncTest, OutputIsBoundedWhileItIsRead) {
  ASSERT_TRUE(Create(Id("dexecbig"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("dexecbig")).ok());
  constexpr size_t kMax = 1 << 20;
  absl::StatusOr<ExecResult> r = DirectExec(
      Id("dexecbig"), {"sh", "-c", "head -c 200000000 /dev/zero | tr '\\0' x; echo done >&2"},
      /*timeout=*/120, kMax);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data.size() + r->stderr_data.size(), kMax);
  EXPECT_EQ(r->stdout_data.find_first_not_of('x'), std::string::npos);
}

TEST_P(RunExecSyncTest, TimesOutKillingTheCommandAndReportsAMissingBinary) {
  ASSERT_TRUE(Create(Id("dexectimeout"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("dexectimeout")).ok());
  absl::StatusOr<ExecResult> slow =
      DirectExec(Id("dexectimeout"), {"sleep", "100"}, /*timeout=*/1);
  EXPECT_TRUE(absl::IsDeadlineExceeded(slow.status())) << slow.status();
  // The command is gone from the container, not only the runtime that ran it.
  absl::StatusOr<ExecResult> ps = DirectExec(
      Id("dexectimeout"),
      {"sh", "-c",
       "for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' <$p/cmdline)\" = 'sleep 100 ' ] && echo alive; "
       "done; true"});
  ASSERT_TRUE(ps.ok()) << ps.status();
  EXPECT_EQ(ps->stdout_data, "");
  absl::StatusOr<ExecResult> missing = DirectExec(Id("dexectimeout"), {"/no/such/binary"});
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::IsInternal(missing.status())) << missing.status();
  EXPECT_THAT(missing.status().message(), HasSubstr("/no/such/binary"));
}

// A command that leaves a child holding its stdout: the answer comes when the command exits,
// with what it printed, not when the child lets go.
TEST_P(RunExecSyncTest, DoesNotWaitForWhatTheCommandLeftBehind) {
  ASSERT_TRUE(Create(Id("dexecbg"), {"sleep", "1000"}).ok());
  ASSERT_TRUE(runtime_->Start(Id("dexecbg")).ok());
  absl::StatusOr<ExecResult> r =
      DirectExec(Id("dexecbg"), {"sh", "-c", "sleep 100 & echo started"}, /*timeout=*/30);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "started\n");
}

INSTANTIATE_TEST_SUITE_P(Direct, RunExecSyncTest,
                         ::testing::Values(MonitorKind{BERTH_CONMON_PATH}),
                         [](const auto&) { return std::string("BerthConmonContainers"); });

}  // namespace
}  // namespace berth::pod
