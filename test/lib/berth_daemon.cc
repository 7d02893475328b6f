#include "test/lib/berth_daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/file_util.h"
#include "gtest/gtest.h"
#include "test/lib/process.h"

namespace berth::testing {

std::string BerthdPath() {
  const char* path = std::getenv("BERTHD");
  if (path == nullptr || *path == '\0') {
    ADD_FAILURE() << "BERTHD is not set: it names the berthd binary under test";
    return "/nonexistent/berthd";
  }
  return path;
}

absl::StatusOr<std::unique_ptr<BerthDaemon>> BerthDaemon::Create(Options options) {
  std::unique_ptr<BerthDaemon> daemon(new BerthDaemon());
  daemon->binary_ = BerthdPath();
  const char* base = std::getenv("BERTH_TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/berth-e2e.XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", tmpl, ": ", strerror(errno)));
  }
  daemon->dir_ = tmpl;
  if (absl::Status s = MakeDirs(daemon->cni_dir()); !s.ok()) return s;
  daemon->metrics_address_ = absl::StrCat("127.0.0.1:", FreeTcpPort());
  const std::string& d = daemon->dir_;
  const std::string yaml = absl::StrCat(
      "root: ", d, "/root\n",
      "run_root: ", d, "/run\n",
      "listen: ", d, "/run/berth.sock\n",
      "log_level: ", options.log_level, "\n",
      "runtimes:\n",
      "  runc: {root: ", d, "/run/runc}\n",
      "  crun: {root: ", d, "/run/crun}\n",
      options.extra_runtimes,
      "network: {conf_dir: ", d, "/cni",
      options.cni_bin_dirs.empty()
          ? std::string()
          : absl::StrCat(", bin_dirs: [", absl::StrJoin(options.cni_bin_dirs, ", "), "]"),
      "}\n",
      "metrics: {enabled: true, address: \"", daemon->metrics_address_, "\"}\n",
      options.extra_yaml);
  if (absl::Status s = WriteFileAtomic(daemon->config_path(), yaml); !s.ok()) return s;
  daemon->client_ = std::make_unique<CriClient>(daemon->socket_path());
  return daemon;
}

BerthDaemon::~BerthDaemon() {
  Kill();
  client_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

absl::Status BerthDaemon::Start(const std::vector<std::string>& env) {
  if (pid_ > 0) return absl::FailedPreconditionError("berthd is already running");
  return Spawned(SpawnWithLog({binary_, "--config", config_path()}, log_path(), env));
}

absl::Status BerthDaemon::StartActivated(int listen_fd, const std::vector<std::string>& env) {
  if (pid_ > 0) return absl::FailedPreconditionError("berthd is already running");
  std::vector<std::string> activation = env;
  activation.push_back("LISTEN_FDS=1");
  activation.push_back("LISTEN_FDNAMES=berthd.socket");
  // LISTEN_PID is the pid systemd forked: a shell that sets it to its own and execs berthd.
  return Spawned(SpawnWithLog({"/bin/sh", "-c", "export LISTEN_PID=$$; exec \"$0\" \"$@\"",
                               binary_, "--config", config_path()},
                              log_path(), activation, listen_fd));
}

absl::Status BerthDaemon::Spawned(absl::StatusOr<pid_t> pid) {
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<int> exited = WaitFor(pid_, std::chrono::milliseconds(0));
    if (exited.ok()) {
      pid_ = -1;
      return absl::FailedPreconditionError(
          absl::StrCat("berthd exited with ", *exited, " during start-up; log:\n", Log()));
    }
    // A new channel per attempt: a channel that met the socket of a killed berthd (or none) sits
    // out gRPC's reconnect backoff, seconds, before it tries again.
    if (::access(socket_path().c_str(), F_OK) == 0 &&
        CriClient(socket_path(), std::chrono::milliseconds(500)).Version().ok()) {
      // A fresh channel: one that knew a previous berthd waits out gRPC's reconnect backoff.
      client_ = std::make_unique<CriClient>(socket_path());
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("berthd did not answer; log:\n", Log()));
}

absl::StatusOr<int> BerthDaemon::Stop(int signal, std::chrono::seconds timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("berthd is not running");
  ::kill(pid_, signal);
  return AwaitExit(timeout);
}

absl::StatusOr<int> BerthDaemon::AwaitExit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("berthd is not running");
  absl::StatusOr<int> code = WaitFor(pid_, timeout);
  if (code.ok()) pid_ = -1;
  return code;
}

void BerthDaemon::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  (void)WaitFor(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

std::string BerthDaemon::Log() const {
  absl::StatusOr<std::string> log = ReadFile(log_path());
  return log.ok() ? *log : std::string(log.status().message());
}

}  // namespace berth::testing
