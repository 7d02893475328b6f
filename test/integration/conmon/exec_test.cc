// berth-exec against real runc: the process it starts in a container is the one `runc exec` starts
// (user, groups, capabilities, no_new_privs, seccomp, cgroups, namespaces, limits, environment,
// working directory, descriptors), and it refuses what is not the container's process.
// (RLIMIT_NOFILE is left out of the comparison: runc 1.1.5, built with Go 1.19, gives an exec'd
// process a soft limit raised to the hard one, not the spec's; berth-exec gives the spec's.)

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "base/process.h"
#include "base/reaper.h"
#include "base/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace berth {
namespace {

using ::testing::HasSubstr;

constexpr char kRunc[] = "/usr/sbin/runc";
constexpr char kBusybox[] = "/bin/busybox";

class BerthExecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
    for (const char* tool : {kRunc, kBusybox}) {
      if (::access(tool, X_OK) != 0) GTEST_SKIP() << tool << " is not installed";
    }
    char tmpl[] = "/tmp/berth-exec-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    id_ = absl::StrCat("berth-exec-test-", ::getpid());
    const std::string rootfs = dir_ + "/bundle/rootfs";
    for (const char* d : {"bin", "proc", "dev", "sys", "tmp", "etc"}) {
      ASSERT_TRUE(MakeDirs(rootfs + "/" + d).ok());
    }
    std::filesystem::permissions(rootfs + "/tmp",
                                 std::filesystem::perms::all | std::filesystem::perms::sticky_bit);
    std::filesystem::copy_file(kBusybox, rootfs + "/bin/busybox");
    for (const char* tool : {"sh", "id", "grep", "cat", "readlink", "env", "sort", "ls", "wc",
                             "mkdir", "pwd", "sleep", "touch", "true"}) {
      std::filesystem::create_symlink("busybox", rootfs + "/bin/" + tool);
    }
    ASSERT_TRUE(WriteFileAtomic(rootfs + "/etc/passwd",
                                "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n")
                    .ok());
    process_ = {{"terminal", false},
                {"user", {{"uid", 1000}, {"gid", 1000}, {"additionalGids", {5, 7}}}},
                {"args", {"sleep", "1000"}},
                {"env", {"PATH=/bin", "GREETING=hello world"}},
                {"cwd", "/tmp"},
                {"capabilities",
                 {{"bounding", {"CAP_KILL", "CAP_NET_BIND_SERVICE"}},
                  {"effective", {"CAP_KILL"}},
                  {"permitted", {"CAP_KILL"}},
                  {"inheritable", {"CAP_KILL"}},
                  {"ambient", {"CAP_KILL"}}}},
                {"rlimits", {{{"type", "RLIMIT_CORE"}, {"soft", 1000}, {"hard", 2000}}}},
                {"noNewPrivileges", true}};
    nlohmann::json spec = {
        {"ociVersion", "1.0.2"},
        {"process", process_},
        {"root", {{"path", "rootfs"}, {"readonly", false}}},
        {"mounts",
         {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
          {{"destination", "/dev"},
           {"type", "tmpfs"},
           {"source", "tmpfs"},
           {"options", {"nosuid", "mode=755"}}}}},
        {"linux",
         {{"namespaces",
           {{{"type", "pid"}},
            {{"type", "mount"}},
            {{"type", "ipc"}},
            {{"type", "uts"}},
            {{"type", "network"}}}},
          {"cgroupsPath", "/" + id_},  // runc delete removes it
          {"seccomp",
           {{"defaultAction", "SCMP_ACT_ALLOW"},
            {"architectures", {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"}},
            {"syscalls",
             {{{"names", {"mkdir", "mkdirat"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 13}},
              {{"names", {"personality"}},
               {"action", "SCMP_ACT_ERRNO"},
               {"args", {{{"index", 0}, {"value", 8}, {"op", "SCMP_CMP_EQ"}}}}}}}}}}}};
    config_ = dir_ + "/bundle/config.json";
    ASSERT_TRUE(WriteFileAtomic(config_, spec.dump()).ok());
    // Its stdio /dev/null: a detached container would hold pipes open for good.
    absl::StatusOr<pid_t> run =
        SpawnProcess({.argv = {kRunc, "--root", dir_ + "/runc", "run", "--detach", "--bundle",
                               dir_ + "/bundle", id_}});
    ASSERT_TRUE(run.ok()) << run.status();
    started_ = true;
    ASSERT_EQ(DecodeWaitStatus(ReapChild(*run)), 0);
    absl::StatusOr<ProcessResult> state =
        RunProcess({.argv = {kRunc, "--root", dir_ + "/runc", "state", id_}});
    ASSERT_TRUE(state.ok());
    pid_ = nlohmann::json::parse(state->stdout_data).at("pid").get<pid_t>();
  }

  void TearDown() override {
    if (started_) {
      (void)RunProcess({.argv = {kRunc, "--root", dir_ + "/runc", "delete", "--force", id_},
                        .timeout = std::chrono::seconds(30)});
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // `args` as the container's process, through runc exec (foreground) or berth-exec.
  absl::StatusOr<ProcessResult> Runc(const std::vector<std::string>& args) {
    nlohmann::json p = process_;
    p["args"] = args;
    RETURN_IF_ERROR(WriteFileAtomic(dir_ + "/runc-process.json", p.dump()));
    return RunProcess({.argv = {kRunc, "--root", dir_ + "/runc", "exec", "--process",
                                dir_ + "/runc-process.json", id_},
                       .timeout = std::chrono::seconds(30)});
  }
  absl::StatusOr<ProcessResult> BerthExec(const std::vector<std::string>& args, pid_t pid = 0,
                                          const std::string& id = "") {
    nlohmann::json p = process_;
    p["args"] = args;
    RETURN_IF_ERROR(WriteFileAtomic(dir_ + "/process.json", p.dump()));
    ::unlink((dir_ + "/log").c_str());
    return RunProcess(
        {.argv = {BERTH_EXEC_PATH, "--log", dir_ + "/log", "--pid-file", dir_ + "/pid", "--process",
                  dir_ + "/process.json", "--config", config_, "--container-id",
                  id.empty() ? id_ : id, "--pid", std::to_string(pid == 0 ? pid_ : pid)},
         .timeout = std::chrono::seconds(30)});
  }
  std::string Log() { return ReadFile(dir_ + "/log").value_or(""); }

  std::string dir_, id_, config_;
  nlohmann::json process_;
  bool started_ = false;
  pid_t pid_ = 0;
};

TEST_F(BerthExecTest, StartsTheProcessRuncExecWould) {
  const std::string probe =
      "id; grep -E '^(Cap|NoNewPrivs|Seccomp|Groups|Uid|Gid)' /proc/self/status;"
      " cat /proc/self/cgroup; for n in cgroup ipc mnt net pid uts; do readlink /proc/self/ns/$n;"
      " done; grep 'core file' /proc/self/limits; env | grep -v -E '^(PWD|SHLVL|_)=' | sort; pwd;"
      " mkdir /tmp/d; echo mkdir $?; ls /proc/self/fd | wc -l";
  absl::StatusOr<ProcessResult> runc = Runc({"sh", "-c", probe});
  ASSERT_TRUE(runc.ok()) << runc.status();
  ASSERT_EQ(runc->exit_code, 0) << runc->stderr_data;
  absl::StatusOr<ProcessResult> ours = BerthExec({"sh", "-c", probe});
  ASSERT_TRUE(ours.ok()) << ours.status();
  ASSERT_EQ(ours->exit_code, 0) << ours->stderr_data << Log();
  EXPECT_EQ(ours->stdout_data, runc->stdout_data);
  // What the comparison stands on: the spec took effect.
  EXPECT_THAT(ours->stdout_data, HasSubstr("uid=1000(u) gid=1000 groups=5,7"));
  EXPECT_THAT(ours->stdout_data, HasSubstr("CapBnd:\t0000000000000420"));
  EXPECT_THAT(ours->stdout_data, HasSubstr("NoNewPrivs:\t1"));
  EXPECT_THAT(ours->stdout_data, HasSubstr("Seccomp:\t2"));
  EXPECT_THAT(ours->stdout_data, HasSubstr("mkdir 1"));  // EACCES from the filter
  EXPECT_THAT(ours->stdout_data, HasSubstr(":/" + id_ + "\n"));
  EXPECT_THAT(ours->stdout_data, HasSubstr("GREETING=hello world\nHOME=/home/u\n"));
  EXPECT_THAT(ours->stdout_data, HasSubstr("Max core file size        1000                 2000"));
  EXPECT_THAT(ours->stdout_data, HasSubstr("CapAmb:\t0000000000000020"));
  // The pid file names the process, in the host's numbering.
  absl::StatusOr<std::string> pid = ReadFile(dir_ + "/pid");
  ASSERT_TRUE(pid.ok());
  EXPECT_GT(std::stoi(*pid), 0);
}

TEST_F(BerthExecTest, RefusesAProcessThatIsNotTheContainers) {
  // A host process (as a reused pid would be): its cgroup is not the container's.
  const pid_t host = ::fork();
  ASSERT_GE(host, 0);
  if (host == 0) {
    ::pause();
    ::_exit(0);
  }
  const std::string marker = dir_ + "/ran-on-the-host";
  absl::StatusOr<ProcessResult> r = BerthExec({"/bin/touch", marker}, host);
  ::kill(host, SIGKILL);
  ::waitpid(host, nullptr, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(Log(), HasSubstr("is gone"));
  EXPECT_FALSE(std::filesystem::exists(marker));
  // The container's process under another container's id: refused too.
  r = BerthExec({"true"}, 0, "someone-else");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(Log(), HasSubstr("is gone"));
}

// The image's files are read as the image's: a FIFO for /etc/passwd (looked up for HOME) does not
// hang the exec.
TEST_F(BerthExecTest, AnImagesFifoDoesNotHangIt) {
  const std::string passwd = dir_ + "/bundle/rootfs/etc/passwd";
  ASSERT_EQ(::unlink(passwd.c_str()), 0);
  ASSERT_EQ(::mkfifo(passwd.c_str(), 0644), 0);
  absl::StatusOr<ProcessResult> r = BerthExec({"sh", "-c", "echo $HOME"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << Log();
  EXPECT_EQ(r->stdout_data, "/\n");
}

TEST_F(BerthExecTest, SaysWhyAProcessCannotStart) {
  absl::StatusOr<ProcessResult> r = BerthExec({"no-such-command"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(Log(), HasSubstr(R"(exec: \"no-such-command\": executable file not found in $PATH)"));
  r = BerthExec({"/no/such/binary"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(Log(), HasSubstr("no such file or directory"));
  // A bad process spec changes nothing: a clear error before anything is joined.
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/bad.json", R"({"args": "sh"})").ok());
  absl::StatusOr<ProcessResult> bad =
      RunProcess({.argv = {BERTH_EXEC_PATH, "--log", dir_ + "/log", "--pid-file", dir_ + "/pid",
                           "--process", dir_ + "/bad.json", "--config", config_, "--container-id",
                           id_, "--pid", std::to_string(pid_)}});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->exit_code, 1);
  EXPECT_THAT(Log(), HasSubstr("process.args is not a list"));
}

}  // namespace
}  // namespace berth
