// Containers through a running berthd, with real runc, overlayfs, the CNI bridge and an image
// from a registry on loopback. Every test runs twice: with berth-conmon and with Debian's conmon
// as the monitor.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/e2e/busybox_env.h"
#include "test/fixtures/image_builder.h"
#include "test/fixtures/registry.h"
#include "test/e2e/leaks.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/eventually.h"
#include "test/lib/http.h"
#include "test/lib/process.h"
#include "test/lib/spdy_client.h"
#include "test/lib/ws_client.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using runtime::v1::RuntimeService;

constexpr char kBridge[] = "berthe2e2";

// The parameter: the monitor, as monitor.path ("" = berth-conmon next to berthd) and monitor.mode
// ("" = the default: one berth-conmon per pod, one upstream conmon per container).
struct MonitorParam {
  std::string path;
  std::string mode;
  std::string exec_sync;  // monitor.exec_sync; "" = the default (berth-exec)
};
void PrintTo(const MonitorParam& p, std::ostream* os) {
  *os << "{path: \"" << p.path << "\", mode: \"" << p.mode << "\", exec_sync: \"" << p.exec_sync
      << "\"}";
}

class ContainerTest : public ::testing::TestWithParam<MonitorParam> {
 protected:
  void SetUp() override {
    if (std::string why = BusyboxEnv::Unavailable(); !why.empty()) GTEST_SKIP() << why;
    const std::string& path = GetParam().path;
    if (!path.empty() && ::access(path.c_str(), X_OK) != 0) {
      GTEST_SKIP() << path << " is not installed";
    }
    std::string yaml = "streaming: {idle_timeout: 3s}\n";
    if (!path.empty() || !GetParam().mode.empty() || !GetParam().exec_sync.empty()) {
      absl::StrAppend(&yaml, "monitor: {path: \"", path, "\"",
                      GetParam().mode.empty() ? "" : ", mode: " + GetParam().mode,
                      GetParam().exec_sync.empty() ? "" : ", exec_sync: " + GetParam().exec_sync,
                      "}\n");
    }
    // A handler whose runtime has no features command, as runtimes before runc 1.1.
    char tmpl[] = "/tmp/berth-e2e-oldrunc.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    old_runc_dir_ = tmpl;
    ASSERT_TRUE(WriteFileAtomic(old_runc_dir_ + "/runc",
                                "#!/bin/sh\n[ \"$1\" = features ] && exit 1\n"
                                "exec /usr/sbin/runc \"$@\"\n",
                                0755)
                    .ok());
    absl::StatusOr<BusyboxEnv> env = BusyboxEnv::Start(
        {.bridge = kBridge,
         .subnet = "10.251.4.0/24",
         .network = "e2e-c",
         .stop_signal = "SIGTERM",
         .extra_yaml = yaml,
         .extra_runtimes = absl::StrCat("  old-runc: {path: ", old_runc_dir_,
                                        "/runc, root: ", old_runc_dir_, "/state}\n")});
    ASSERT_TRUE(env.ok()) << env.status();
    registry_ = std::move(env->registry);
    daemon_ = std::move(env->daemon);
    image_ = env->image;
    absl::StatusOr<std::string> pod = RunPod("pod");
    ASSERT_TRUE(pod.ok()) << pod.status() << daemon_->Log();
    pod_ = *pod;
  }

  void TearDown() override {
    absl::Cleanup remove_old_runc = [this] {
      if (!old_runc_dir_.empty()) std::filesystem::remove_all(old_runc_dir_);
    };
    if (!daemon_) return;
    if (!daemon_->running()) (void)daemon_->Start();
    if (daemon_->running()) {
      absl::Status removed = cri().RemoveAllPodSandboxes();
      EXPECT_TRUE(removed.ok()) << removed << daemon_->Log();
      ExpectNoLeaks();
    }
    daemon_.reset();
    BusyboxEnv::RemoveBridge(kBridge);
  }

  CriClient& cri() { return daemon_->client(); }
  bool IsDefaultMonitor() const { return GetParam().path.empty() && GetParam().mode.empty(); }

  runtime::v1::PodSandboxConfig PodConfig(const std::string& name) {
    return E2ePodConfig(*daemon_, name);
  }

  absl::StatusOr<std::string> RunPod(const std::string& name) {
    runtime::v1::RunPodSandboxRequest request;
    *request.mutable_config() = PodConfig(name);
    absl::StatusOr<runtime::v1::RunPodSandboxResponse> r =
        cri().Call(&RuntimeService::Stub::RunPodSandbox, request);
    if (!r.ok()) return r.status();
    return r->pod_sandbox_id();
  }

  runtime::v1::ContainerConfig Config(const std::string& name, std::vector<std::string> command) {
    runtime::v1::ContainerConfig c;
    c.mutable_metadata()->set_name(name);
    c.mutable_image()->set_image(image_);
    for (const std::string& a : command) c.add_command(a);
    c.set_log_path(name + ".log");
    (*c.mutable_labels())["name"] = name;
    return c;
  }

  absl::StatusOr<std::string> Create(const runtime::v1::ContainerConfig& config,
                                     const std::string& pod = "") {
    runtime::v1::CreateContainerRequest request;
    request.set_pod_sandbox_id(pod.empty() ? pod_ : pod);
    *request.mutable_config() = config;
    *request.mutable_sandbox_config() = PodConfig("pod");
    absl::StatusOr<runtime::v1::CreateContainerResponse> r =
        cri().Call(&RuntimeService::Stub::CreateContainer, request);
    if (!r.ok()) return r.status();
    return r->container_id();
  }

  absl::Status Start(const std::string& id) {
    runtime::v1::StartContainerRequest r;
    r.set_container_id(id);
    return cri().Call(&RuntimeService::Stub::StartContainer, r).status();
  }

  absl::StatusOr<std::string> CreateAndStart(const runtime::v1::ContainerConfig& config) {
    absl::StatusOr<std::string> id = Create(config);
    if (!id.ok()) return id;
    if (absl::Status s = Start(*id); !s.ok()) return s;
    return id;
  }

  absl::StatusOr<runtime::v1::ContainerStatusResponse> Status(const std::string& id,
                                                              bool verbose = false) {
    runtime::v1::ContainerStatusRequest r;
    r.set_container_id(id);
    r.set_verbose(verbose);
    return cri().Call(&RuntimeService::Stub::ContainerStatus, r);
  }

  runtime::v1::ContainerState State(const std::string& id) {
    absl::StatusOr<runtime::v1::ContainerStatusResponse> s = Status(id);
    return s.ok() ? s->status().state() : runtime::v1::CONTAINER_UNKNOWN;
  }

  bool AwaitExit(const std::string& id) {
    return Eventually([&] { return State(id) == runtime::v1::CONTAINER_EXITED; });
  }

  absl::Status Stop(const std::string& id, int64_t timeout) {
    runtime::v1::StopContainerRequest r;
    r.set_container_id(id);
    r.set_timeout(timeout);
    return cri().Call(&RuntimeService::Stub::StopContainer, r).status();
  }

  absl::Status Remove(const std::string& id) {
    runtime::v1::RemoveContainerRequest r;
    r.set_container_id(id);
    return cri().Call(&RuntimeService::Stub::RemoveContainer, r).status();
  }

  absl::StatusOr<runtime::v1::ExecSyncResponse> Exec(const std::string& id,
                                                     std::vector<std::string> cmd,
                                                     int64_t timeout = 0) {
    runtime::v1::ExecSyncRequest r;
    r.set_container_id(id);
    for (const std::string& a : cmd) r.add_cmd(a);
    r.set_timeout(timeout);
    return cri().Call(&RuntimeService::Stub::ExecSync, r);
  }

  std::string Log(const std::string& name) {
    absl::StatusOr<std::string> text = ReadFile(daemon_->dir() + "/logs/pod/" + name + ".log");
    return text.ok() ? *text : "";
  }

  // Nothing of ours is left: mounts, monitors, runtime state, container directories, IPs.
  void ExpectNoLeaks() { EXPECT_THAT(FindLeaks(*daemon_), ::testing::IsEmpty()); }

  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<BerthDaemon> daemon_;
  std::string image_;
  std::string pod_;
  std::string old_runc_dir_;
};

TEST_P(ContainerTest, LifecycleAndLogs) {
  runtime::v1::ContainerConfig config = Config(
      "web", {"sh", "-c", "echo hello; echo oops >&2; trap 'echo bye; exit 0' TERM; "
                          "while true; do sleep 0.1; done"});
  absl::StatusOr<std::string> id = Create(config);
  ASSERT_TRUE(id.ok()) << id.status() << daemon_->Log();
  EXPECT_EQ(State(*id), runtime::v1::CONTAINER_CREATED);
  ASSERT_TRUE(Start(*id).ok());
  absl::StatusOr<runtime::v1::ContainerStatusResponse> status = Status(*id, /*verbose=*/true);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->status().state(), runtime::v1::CONTAINER_RUNNING);
  EXPECT_GT(status->status().started_at(), 0);
  EXPECT_EQ(status->status().image().image(), image_);
  EXPECT_THAT(status->status().image_ref(), HasSubstr("@sha256:"));
  EXPECT_EQ(status->status().log_path(), daemon_->dir() + "/logs/pod/web.log");
  nlohmann::json info = nlohmann::json::parse(status->info().at("info"));
  EXPECT_GT(info["pid"].get<int>(), 0);
  EXPECT_EQ(info["runtimeSpec"]["process"]["args"][0], "sh");

  // The same pod network: the container sees the pod's hostname.
  absl::StatusOr<runtime::v1::ExecSyncResponse> hostname = Exec(*id, {"hostname"});
  ASSERT_TRUE(hostname.ok()) << hostname.status();
  EXPECT_EQ(hostname->stdout(), "pod\n");

  ASSERT_TRUE(Eventually([&] { return absl::StrContains(Log("web"), "hello"); }));
  EXPECT_THAT(Log("web"), HasSubstr(" stderr F oops\n"));

  runtime::v1::ListContainersRequest list;
  list.mutable_filter()->set_pod_sandbox_id(pod_);
  absl::StatusOr<runtime::v1::ListContainersResponse> listed =
      cri().Call(&RuntimeService::Stub::ListContainers, list);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->containers_size(), 1);
  EXPECT_EQ(listed->containers(0).id(), *id);

  ASSERT_TRUE(Stop(*id, 10).ok());
  status = Status(*id);
  EXPECT_EQ(status->status().state(), runtime::v1::CONTAINER_EXITED);
  EXPECT_EQ(status->status().exit_code(), 0);
  EXPECT_EQ(status->status().reason(), "Completed");
  EXPECT_THAT(Log("web"), HasSubstr(" stdout F bye\n"));
  ASSERT_TRUE(Remove(*id).ok());
  EXPECT_EQ(Status(*id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Remove(*id).ok());  // idempotent
  EXPECT_TRUE(Stop(*id, 0).ok());
}

TEST_P(ContainerTest, ExitCodesAndReasons) {
  absl::StatusOr<std::string> fails = CreateAndStart(Config("fails", {"sh", "-c", "exit 3"}));
  ASSERT_TRUE(fails.ok()) << fails.status();
  absl::StatusOr<std::string> ok = CreateAndStart(Config("ok", {"true"}));
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_TRUE(AwaitExit(*fails));
  ASSERT_TRUE(AwaitExit(*ok));
  EXPECT_EQ(Status(*fails)->status().exit_code(), 3);
  EXPECT_EQ(Status(*fails)->status().reason(), "Error");
  EXPECT_EQ(Status(*ok)->status().exit_code(), 0);
  EXPECT_EQ(Status(*ok)->status().reason(), "Completed");
  EXPECT_GT(Status(*ok)->status().finished_at(), 0);
  // The name is taken until the container is removed.
  absl::StatusOr<std::string> again = Create(Config("ok", {"true"}));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr(*ok));
}

// kubelet's exec probes keep running while a container stops: an exec that races the exit is
// "not running" (FailedPrecondition), never an internal error with the runtime's noise.
TEST_P(ContainerTest, ExecSyncRacingTheExitIsNotRunning) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("short", {"sh", "-c", "sleep 2"}));
  ASSERT_TRUE(id.ok()) << id.status();
  int ok = 0, not_running = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<runtime::v1::ExecSyncResponse> r = Exec(*id, {"true"});
    if (r.ok()) {
      ++ok;
      continue;
    }
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    ++not_running;
    if (State(*id) == runtime::v1::CONTAINER_EXITED) break;
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(not_running, 0);
}

TEST_P(ContainerTest, ExecSyncOutputExitCodeAndTimeout) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("exec", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<runtime::v1::ExecSyncResponse> r =
      Exec(*id, {"sh", "-c", "echo out; echo err >&2; exit 4"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout(), "out\n");
  EXPECT_EQ(r->stderr(), "err\n");
  EXPECT_EQ(r->exit_code(), 4);
  absl::StatusOr<runtime::v1::ExecSyncResponse> slow = Exec(*id, {"sleep", "60"}, 1);
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kDeadlineExceeded) << slow.status();
  absl::StatusOr<runtime::v1::ExecSyncResponse> missing = Exec(*id, {"/no/such/binary"});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/no/such/binary"));
  // A probe that leaves a child running with its stdout open is answered when it exits.
  absl::StatusOr<runtime::v1::ExecSyncResponse> background =
      Exec(*id, {"sh", "-c", "sleep 100 & echo started"}, 30);
  ASSERT_TRUE(background.ok()) << background.status();
  EXPECT_EQ(background->stdout(), "started\n");
  EXPECT_EQ(background->exit_code(), 0);
}

// ExecSync has no monitor: the command of a berthd killed in the middle of one is ended when
// berthd starts again, not left running in the container.
TEST_P(ContainerTest, ExecSyncOfAKilledBerthdEndsAtItsRestart) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("execkilled", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  std::thread call([&] { (void)Exec(*id, {"sleep", "300"}); });
  pid_t pid = 0;
  const bool running = Eventually([&] {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(daemon_->run_root() + "/exec", ec)) {
      absl::StatusOr<std::string> text = ReadFile(e.path().string() + "/pid");
      if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid)) return true;
    }
    return false;
  });
  daemon_->Kill();
  call.join();
  ASSERT_TRUE(running) << "no exec started";
  ASSERT_TRUE(std::filesystem::exists(absl::StrCat("/proc/", pid)));
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  // Gone, or a zombie of an init that is slow to reap.
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
    return !stat.ok() || absl::StrContains(*stat, ") Z ");
  })) << "the exec's process is still running";
  EXPECT_EQ(State(*id), runtime::v1::CONTAINER_RUNNING);
  absl::StatusOr<runtime::v1::ExecSyncResponse> again = Exec(*id, {"echo", "again"});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->stdout(), "again\n");
}

TEST_P(ContainerTest, UpdateContainerResourcesReachesTheCgroup) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("resized", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::UpdateContainerResourcesRequest r;
  r.set_container_id(*id);
  r.mutable_linux()->set_memory_limit_in_bytes(96 << 20);
  r.mutable_linux()->set_cpu_shares(256);
  ASSERT_TRUE(cri().Call(&RuntimeService::Stub::UpdateContainerResources, r).ok());
  // Inside, the container's own cgroup: v1 memory controller or the v2 unified file.
  absl::StatusOr<runtime::v1::ExecSyncResponse> limit = Exec(
      *id, {"sh", "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
            "cat /sys/fs/cgroup/memory.max"});
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_EQ(limit->stdout(), std::to_string(96 << 20) + "\n");
  absl::StatusOr<runtime::v1::ContainerStatusResponse> status = Status(*id);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->status().resources().linux().memory_limit_in_bytes(), 96 << 20);
  EXPECT_EQ(status->status().resources().linux().cpu_shares(), 256);
}

TEST_P(ContainerTest, StopWaitsTheTimeoutThenKills) {
  // The shell ignores SIGTERM: only the SIGKILL after the timeout ends it.
  absl::StatusOr<std::string> id = CreateAndStart(
      Config("stubborn", {"sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"}));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(Log("stubborn"), "ready"); }));
  ASSERT_TRUE(Stop(*id, 1).ok());
  absl::StatusOr<runtime::v1::ContainerStatusResponse> status = Status(*id);
  EXPECT_EQ(status->status().state(), runtime::v1::CONTAINER_EXITED);
  EXPECT_EQ(status->status().exit_code(), 137);
  EXPECT_EQ(status->status().reason(), "Error");
}

// Recursive read-only mounts as critest checks them: a host directory with a tmpfs under it.
// A plain read-only bind leaves the tmpfs writable; recursive_read_only makes it read-only too.
TEST_P(ContainerTest, RecursiveReadOnlyMounts) {
  char tmpl[] = "/tmp/berth-e2e-rro.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string host_dir = tmpl;
  const std::string sub = host_dir + "/tmpfs";
  ASSERT_TRUE(MakeDirs(sub, 0755).ok());
  ASSERT_EQ(::mount("none", sub.c_str(), "tmpfs", 0, nullptr), 0) << std::strerror(errno);
  absl::Cleanup cleanup = [&] {
    ::umount2(sub.c_str(), MNT_DETACH);
    std::filesystem::remove_all(host_dir);
  };
  auto config = [&](const std::string& name, bool readonly, bool rro,
                    runtime::v1::MountPropagation propagation) {
    runtime::v1::ContainerConfig c = Config(name, {"sleep", "1000"});
    runtime::v1::Mount* m = c.add_mounts();
    m->set_container_path("/mnt");
    m->set_host_path(host_dir);
    m->set_readonly(readonly);
    m->set_recursive_read_only(rro);
    m->set_propagation(propagation);
    return c;
  };
  auto touch = [&](const std::string& id) {
    absl::StatusOr<runtime::v1::ExecSyncResponse> r =
        Exec(id, {"sh", "-c", "touch /mnt/tmpfs/f 2>&1; echo rc=$?"});
    return r.ok() ? r->stdout() : std::string(r.status().message());
  };
  absl::StatusOr<std::string> plain =
      CreateAndStart(config("ro", true, false, runtime::v1::PROPAGATION_PRIVATE));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_THAT(touch(*plain), HasSubstr("rc=0"));
  absl::StatusOr<std::string> rro =
      CreateAndStart(config("rro", true, true, runtime::v1::PROPAGATION_PRIVATE));
  ASSERT_TRUE(rro.ok()) << rro.status();
  EXPECT_THAT(touch(*rro), HasSubstr("Read-only file system"));

  // The CRI's rules: recursive_read_only needs readonly and private propagation.
  for (const auto& [readonly, propagation] :
       std::vector<std::pair<bool, runtime::v1::MountPropagation>>{
           {false, runtime::v1::PROPAGATION_PRIVATE},
           {true, runtime::v1::PROPAGATION_HOST_TO_CONTAINER},
           {true, runtime::v1::PROPAGATION_BIDIRECTIONAL}}) {
    absl::StatusOr<std::string> bad = Create(config("bad", readonly, true, propagation));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  }
  // A handler whose runtime cannot say that it can (no features command) refuses it.
  runtime::v1::RunPodSandboxRequest old_pod;
  *old_pod.mutable_config() = PodConfig("old-runc-pod");
  old_pod.set_runtime_handler("old-runc");
  absl::StatusOr<runtime::v1::RunPodSandboxResponse> old =
      cri().Call(&RuntimeService::Stub::RunPodSandbox, old_pod);
  ASSERT_TRUE(old.ok()) << old.status();
  absl::StatusOr<runtime::v1::StatusResponse> status = cri().Status();
  ASSERT_TRUE(status.ok());
  bool old_runc_listed = false;
  for (const auto& h : status->runtime_handlers()) {
    if (h.name() != "old-runc") continue;
    old_runc_listed = true;
    EXPECT_FALSE(h.features().recursive_read_only_mounts());
  }
  EXPECT_TRUE(old_runc_listed);
  absl::StatusOr<std::string> refused = Create(
      config("on-old-runc", true, true, runtime::v1::PROPAGATION_PRIVATE), old->pod_sandbox_id());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("recursive read-only"));
}

TEST_P(ContainerTest, ListFiltersAndImageIdsAndMounts) {
  // kubelet creates containers naming the image by its id.
  absl::StatusOr<runtime::v1::ImageStatusResponse> image = cri().ImageStatus(image_);
  ASSERT_TRUE(image.ok());
  char tmpl[] = "/tmp/berth-e2e-mount.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string host_dir = tmpl;
  ASSERT_TRUE(WriteFileAtomic(host_dir + "/greeting", "hi from the host\n").ok());
  runtime::v1::ContainerConfig config = Config("by-id", {"sleep", "1000"});
  config.mutable_image()->set_image(image->image().id());
  runtime::v1::Mount* mount = config.add_mounts();
  mount->set_container_path("/data");
  mount->set_host_path(host_dir);
  mount->set_readonly(true);
  (*config.mutable_labels())["tier"] = "front";
  absl::StatusOr<std::string> running = CreateAndStart(config);
  ASSERT_TRUE(running.ok()) << running.status();
  absl::StatusOr<std::string> created = Create(Config("idle", {"true"}));
  ASSERT_TRUE(created.ok()) << created.status();

  absl::StatusOr<runtime::v1::ExecSyncResponse> read = Exec(*running, {"cat", "/data/greeting"});
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->stdout(), "hi from the host\n");
  absl::StatusOr<runtime::v1::ExecSyncResponse> write = Exec(*running, {"touch", "/data/new"});
  ASSERT_TRUE(write.ok());
  EXPECT_NE(write->exit_code(), 0);  // read-only
  EXPECT_FALSE(std::filesystem::exists(host_dir + "/new"));
  absl::StatusOr<runtime::v1::ContainerStatusResponse> status = Status(*running);
  ASSERT_EQ(status->status().mounts_size(), 1);
  EXPECT_TRUE(status->status().mounts(0).readonly());
  EXPECT_EQ(status->status().image_id(), image->image().id());
  // kubelet's image GC keeps the images whose ListImages id a listed container's image_ref
  // names; anything else (a repo digest) would let it remove images in use.
  absl::StatusOr<runtime::v1::ListContainersResponse> all =
      cri().Call(&RuntimeService::Stub::ListContainers, runtime::v1::ListContainersRequest());
  ASSERT_TRUE(all.ok());
  absl::StatusOr<runtime::v1::ListImagesResponse> images =
      cri().Call(&runtime::v1::ImageService::Stub::ListImages, runtime::v1::ListImagesRequest());
  ASSERT_TRUE(images.ok()) << images.status();
  std::set<std::string> image_ids;
  for (const auto& i : images->images()) image_ids.insert(i.id());
  for (const auto& c : all->containers()) {
    EXPECT_TRUE(image_ids.contains(c.image_ref())) << c.image_ref();
    EXPECT_EQ(c.image_ref(), image->image().id());
  }

  auto list = [&](const runtime::v1::ContainerFilter& filter) {
    runtime::v1::ListContainersRequest r;
    *r.mutable_filter() = filter;
    std::vector<std::string> ids;
    absl::StatusOr<runtime::v1::ListContainersResponse> got =
        cri().Call(&RuntimeService::Stub::ListContainers, r);
    if (got.ok()) {
      for (const auto& c : got->containers()) ids.push_back(c.id());
    }
    return ids;
  };
  runtime::v1::ContainerFilter by_state;
  by_state.mutable_state()->set_state(runtime::v1::CONTAINER_CREATED);
  EXPECT_THAT(list(by_state), ::testing::ElementsAre(*created));
  runtime::v1::ContainerFilter by_label;
  (*by_label.mutable_label_selector())["tier"] = "front";
  EXPECT_THAT(list(by_label), ::testing::ElementsAre(*running));
  runtime::v1::ContainerFilter by_prefix;
  by_prefix.set_id(running->substr(0, 12));
  EXPECT_THAT(list(by_prefix), ::testing::ElementsAre(*running));
  runtime::v1::ContainerFilter other_pod;
  other_pod.set_pod_sandbox_id("0000");
  EXPECT_THAT(list(other_pod), ::testing::IsEmpty());
  ASSERT_TRUE(Remove(*running).ok());
  std::filesystem::remove_all(host_dir);
}

TEST_P(ContainerTest, OomKilled) {
  runtime::v1::ContainerConfig config =
      Config("oom", {"sh", "-c", "x=y; while true; do x=$x$x$x$x; done"});
  config.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(16 << 20);
  absl::StatusOr<std::string> id = CreateAndStart(config);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(AwaitExit(*id));
  EXPECT_EQ(Status(*id)->status().reason(), "OOMKilled");
  EXPECT_EQ(Status(*id)->status().exit_code(), 137);
  // Counted for the operator: by pod, and among the exits by reason.
  absl::StatusOr<HttpResponse> metrics = HttpGet(daemon_->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(metrics->body,
              HasSubstr(R"(berth_container_oom_kills_total{namespace="e2e",pod="pod"} 1)"));
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_container_exits_total{reason="OOMKilled"} 1)"));
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_containers{state="exited"} 1)"));
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_pods{state="ready"} 1)"));
  // The pod and the container were recorded in transactions.
  EXPECT_THAT(metrics->body,
              Not(HasSubstr(R"(berth_db_transaction_duration_seconds_count{result="commit"} 0)")));
}

// User 1000 with a supplemental group, no_new_privs, NET_BIND_SERVICE alone, RuntimeDefault seccomp.
void Restrict(runtime::v1::ContainerConfig& config) {
  auto* sc = config.mutable_linux()->mutable_security_context();
  sc->mutable_run_as_user()->set_value(1000);
  sc->add_supplemental_groups(3000);
  sc->set_no_new_privs(true);
  sc->mutable_capabilities()->add_drop_capabilities("ALL");
  sc->mutable_capabilities()->add_add_capabilities("NET_BIND_SERVICE");
  sc->mutable_seccomp()->set_profile_type(runtime::v1::SecurityProfile::RuntimeDefault);
}

// What ExecSync starts (berth-exec, or the runtime's exec with upstream conmon) is what the
// container's own process is: user and groups, capabilities, no_new_privs, seccomp, cgroups,
// namespaces, limits, environment, working directory, and no descriptor of berthd's.
TEST_P(ContainerTest, ExecSyncRunsAsTheContainersOwnProcess) {
  const std::string probe =
      "id; grep -E '^(Cap|NoNewPrivs|Seccomp|Groups)' /proc/self/status; cat /proc/self/cgroup;"
      " for n in cgroup ipc mnt net pid uts; do readlink /proc/self/ns/$n; done;"
      " grep -v -E '^Max (processes|open files|pending signals)' /proc/self/limits;"
      " env | grep -v -E '^(PWD|SHLVL|_)=' | sort; pwd; ls /proc/self/fd | wc -l";
  for (const bool secure : {false, true}) {
    SCOPED_TRACE(secure ? "with a security context" : "root, defaults");
    runtime::v1::ContainerConfig config =
        Config(secure ? "own-secure" : "own-plain",
               {"sh", "-c", "(" + probe + ") > /tmp/own 2>&1; exec sleep 1000"});
    config.set_working_dir("/tmp");
    auto* env = config.add_envs();
    env->set_key("PROBE_ENV");
    env->set_value("a b");
    if (secure) Restrict(config);
    absl::StatusOr<std::string> id = CreateAndStart(config);
    ASSERT_TRUE(id.ok()) << id.status() << daemon_->Log();
    std::string own;
    for (int i = 0; i < 100 && own.empty(); ++i) {
      absl::StatusOr<runtime::v1::ExecSyncResponse> r = Exec(*id, {"cat", "/tmp/own"});
      ASSERT_TRUE(r.ok()) << r.status();
      if (r->exit_code() == 0 && absl::StrContains(r->stdout(), "\n/tmp\n")) own = r->stdout();
      if (own.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_FALSE(own.empty());
    absl::StatusOr<runtime::v1::ExecSyncResponse> exec = Exec(*id, {"sh", "-c", probe});
    ASSERT_TRUE(exec.ok()) << exec.status();
    EXPECT_EQ(exec->exit_code(), 0) << exec->stderr();
    EXPECT_EQ(exec->stdout(), own);
    EXPECT_THAT(own, HasSubstr("PROBE_ENV=a b"));
    EXPECT_THAT(own, HasSubstr(secure ? "NoNewPrivs:\t1" : "NoNewPrivs:\t0"));
  }
}

TEST_P(ContainerTest, SecurityContextIsAppliedInsideTheContainer) {
  runtime::v1::ContainerConfig config = Config("secure", {"sleep", "1000"});
  Restrict(config);
  config.mutable_linux()->mutable_security_context()->set_readonly_rootfs(true);
  absl::StatusOr<std::string> id = CreateAndStart(config);
  ASSERT_TRUE(id.ok()) << id.status() << daemon_->Log();
  absl::StatusOr<runtime::v1::ExecSyncResponse> proc = Exec(*id, {"cat", "/proc/self/status"});
  ASSERT_TRUE(proc.ok()) << proc.status();
  // 1000 is "berth" in the image, with primary group 1000 and member of "extra" (2000).
  EXPECT_THAT(proc->stdout(), HasSubstr("Uid:\t1000\t1000\t1000\t1000"));
  EXPECT_THAT(proc->stdout(), HasSubstr("Gid:\t1000\t1000\t1000\t1000"));
  EXPECT_THAT(proc->stdout(), HasSubstr("Groups:\t1000 2000 3000"));
  EXPECT_THAT(proc->stdout(), HasSubstr("CapBnd:\t0000000000000400"));  // NET_BIND_SERVICE only
  EXPECT_THAT(proc->stdout(), HasSubstr("NoNewPrivs:\t1"));
  EXPECT_THAT(proc->stdout(), HasSubstr("Seccomp:\t2"));
  absl::StatusOr<runtime::v1::ExecSyncResponse> touch = Exec(*id, {"touch", "/file"});
  ASSERT_TRUE(touch.ok());
  EXPECT_NE(touch->exit_code(), 0);
  EXPECT_THAT(touch->stderr(), HasSubstr("Read-only file system"));
  // Masked: /sys/firmware (the host's has acpi/) is an empty directory inside.
  absl::StatusOr<runtime::v1::ExecSyncResponse> firmware = Exec(*id, {"ls", "-A", "/sys/firmware"});
  ASSERT_TRUE(firmware.ok());
  EXPECT_EQ(firmware->exit_code(), 0) << firmware->stderr();
  EXPECT_EQ(firmware->stdout(), "");

  // Without a security context: root, the default capabilities, no seccomp filter.
  absl::StatusOr<std::string> plain = CreateAndStart(Config("plain", {"sleep", "1000"}));
  ASSERT_TRUE(plain.ok()) << plain.status();
  absl::StatusOr<runtime::v1::ExecSyncResponse> plain_proc = Exec(*plain, {"cat", "/proc/self/status"});
  ASSERT_TRUE(plain_proc.ok());
  EXPECT_THAT(plain_proc->stdout(), HasSubstr("Uid:\t0\t0\t0\t0"));
  EXPECT_THAT(plain_proc->stdout(), HasSubstr("CapBnd:\t00000000a80425fb"));
  EXPECT_THAT(plain_proc->stdout(), HasSubstr("Seccomp:\t0"));
}

TEST_P(ContainerTest, BadBinaryIsAClearErrorAndLeavesNothing) {
  absl::StatusOr<std::string> id = Create(Config("bad", {"/no/such/binary"}));
  absl::Status result = id.ok() ? Start(*id) : id.status();
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.message()), HasSubstr("/no/such/binary"));
  if (id.ok()) {
    EXPECT_EQ(State(*id), runtime::v1::CONTAINER_EXITED);
    EXPECT_EQ(Status(*id)->status().reason(), "ContainerCannotRun");
    EXPECT_TRUE(Remove(*id).ok());
  }
  runtime::v1::ListContainersRequest list;
  EXPECT_EQ(cri().Call(&RuntimeService::Stub::ListContainers, list)->containers_size(), 0);
  // An unknown image and an unknown sandbox are clear errors too.
  runtime::v1::ContainerConfig unknown = Config("unknown", {"true"});
  unknown.mutable_image()->set_image("no/such:image");
  EXPECT_EQ(Create(unknown).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Create(Config("nopod", {"true"}), "0123456789ab").status().code(),
            absl::StatusCode::kNotFound);
}

// What kubelet never sends, because the apiserver validated it, is refused the same way when a
// client talks to the socket directly: nothing is created, nothing written outside the pod's log
// directory, no process joins another pod.
TEST_P(ContainerTest, RequestsBeyondKubeletsBoundsAreRefusedAndChangeNothing) {
  auto refused = [&](const runtime::v1::ContainerConfig& config, const std::string& what) {
    absl::StatusOr<std::string> id = Create(config);
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << what << ": " << id.status();
    EXPECT_THAT(std::string(id.status().message()), HasSubstr(what));
  };
  runtime::v1::ContainerConfig escape = Config("escape", {"true"});
  escape.set_log_path("../../escape.log");
  refused(escape, "config.log_path");
  escape.set_log_path(daemon_->dir() + "/absolute.log");
  refused(escape, "config.log_path");
  EXPECT_FALSE(std::filesystem::exists(daemon_->dir() + "/escape.log"));
  EXPECT_FALSE(std::filesystem::exists(daemon_->dir() + "/absolute.log"));
  runtime::v1::ContainerConfig big = Config("big", {"true"});
  (*big.mutable_annotations())["a"] = std::string(300 << 10, 'a');
  refused(big, "config.annotations");
  refused(Config(std::string(300, 'n'), {"true"}), "config.metadata.name");

  // Annotations runtimes act on (systemd unit properties, crun's run.oci.*) never reach the OCI
  // spec from a request: the handler allows none. The CRI still reports them.
  runtime::v1::ContainerConfig annotated = Config("annotated", {"true"});
  (*annotated.mutable_annotations())["org.systemd.property.DeviceAllow"] = "char-* rwm";
  (*annotated.mutable_annotations())["run.oci.keep_original_groups"] = "1";
  absl::StatusOr<std::string> annotated_id = Create(annotated);
  ASSERT_TRUE(annotated_id.ok()) << annotated_id.status();
  absl::StatusOr<runtime::v1::ContainerStatusResponse> annotated_status =
      Status(*annotated_id, /*verbose=*/true);
  ASSERT_TRUE(annotated_status.ok()) << annotated_status.status();
  EXPECT_EQ(annotated_status->status().annotations().at("run.oci.keep_original_groups"), "1");
  const nlohmann::json spec =
      nlohmann::json::parse(annotated_status->info().at("info"))["runtimeSpec"];
  EXPECT_FALSE(spec["annotations"].contains("org.systemd.property.DeviceAllow")) << spec.dump();
  EXPECT_FALSE(spec["annotations"].contains("run.oci.keep_original_groups"));
  EXPECT_EQ(spec["annotations"]["io.kubernetes.cri.container-type"], "container");
  ASSERT_TRUE(Remove(*annotated_id).ok());

  // A container of another pod is no target for this pod's process namespace.
  absl::StatusOr<std::string> other = RunPod("other");
  ASSERT_TRUE(other.ok()) << other.status();
  runtime::v1::ContainerConfig theirs = Config("theirs", {"sleep", "60"});
  absl::StatusOr<std::string> target = Create(theirs, *other);
  ASSERT_TRUE(target.ok()) << target.status();
  ASSERT_TRUE(Start(*target).ok());
  runtime::v1::ContainerConfig peek = Config("peek", {"true"});
  auto* ns = peek.mutable_linux()->mutable_security_context()->mutable_namespace_options();
  ns->set_pid(runtime::v1::TARGET);
  ns->set_target_id(*target);
  refused(peek, "is not in pod sandbox");

  runtime::v1::RunPodSandboxRequest pod;
  *pod.mutable_config() = PodConfig("labelled");
  (*pod.mutable_config()->mutable_labels())["l"] = std::string(300 << 10, 'l');
  absl::Status run = cri().Call(&RuntimeService::Stub::RunPodSandbox, pod).status();
  EXPECT_EQ(run.code(), absl::StatusCode::kInvalidArgument) << run;
  runtime::v1::ListContainersRequest containers;
  EXPECT_EQ(cri().Call(&RuntimeService::Stub::ListContainers, containers)->containers_size(), 1);
  runtime::v1::ListPodSandboxRequest pods;
  EXPECT_EQ(cri().Call(&RuntimeService::Stub::ListPodSandbox, pods)->items_size(), 2);
}

TEST_P(ContainerTest, ReopenContainerLog) {
  absl::StatusOr<std::string> id = CreateAndStart(
      Config("rotate", {"sh", "-c", "echo one; while true; do sleep 0.2; echo tick; done"}));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(Log("rotate"), "one"); }));
  const std::string path = daemon_->dir() + "/logs/pod/rotate.log";
  std::filesystem::rename(path, path + ".1");
  runtime::v1::ReopenContainerLogRequest r;
  r.set_container_id(*id);
  ASSERT_TRUE(cri().Call(&RuntimeService::Stub::ReopenContainerLog, r).ok());
  ASSERT_TRUE(Eventually([&] { return absl::StrContains(Log("rotate"), "tick"); }));
  EXPECT_THAT(Log("rotate"), Not(HasSubstr("one")));
}

TEST_P(ContainerTest, StoppingThePodStopsItsContainers) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("inpod", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod_);
  ASSERT_TRUE(cri().Call(&RuntimeService::Stub::StopPodSandbox, stop).ok());
  EXPECT_EQ(State(*id), runtime::v1::CONTAINER_EXITED);
  EXPECT_EQ(Create(Config("late", {"true"})).status().code(),
            absl::StatusCode::kFailedPrecondition);
  runtime::v1::RemovePodSandboxRequest remove;
  remove.set_pod_sandbox_id(pod_);
  ASSERT_TRUE(cri().Call(&RuntimeService::Stub::RemovePodSandbox, remove).ok());
  EXPECT_EQ(Status(*id).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(ContainerTest, ACreatedContainerHasNoProcessUntilItStarts) {
  // As containerd's: CreateContainer makes the bundle; the runtime makes the container (and the
  // monitor its process) at StartContainer.
  auto in_runtime = [&](const std::string& id) {
    absl::StatusOr<CommandResult> state =
        RunCommand({"/usr/sbin/runc", "--root", daemon_->run_root() + "/runc", "state", id});
    return state.ok() && state->exit_code == 0;
  };
  absl::StatusOr<std::string> started = Create(Config("started", {"sleep", "1000"}));
  ASSERT_TRUE(started.ok()) << started.status() << daemon_->Log();
  absl::StatusOr<std::string> stopped = Create(Config("stopped", {"sleep", "1000"}));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  for (const std::string& id : {*started, *stopped}) {
    absl::StatusOr<runtime::v1::ContainerStatusResponse> status = Status(id, /*verbose=*/true);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(status->status().state(), runtime::v1::CONTAINER_CREATED);
    EXPECT_EQ(nlohmann::json::parse(status->info().at("info"))["pid"], 0);
    EXPECT_FALSE(in_runtime(id));
  }
  ASSERT_TRUE(Start(*started).ok()) << daemon_->Log();
  EXPECT_EQ(State(*started), runtime::v1::CONTAINER_RUNNING);
  EXPECT_TRUE(in_runtime(*started));
  // Stopped before it ever started: exited at once, as a kill of the runtime's init would end
  // it; it cannot start any more.
  ASSERT_TRUE(Stop(*stopped, 10).ok());
  absl::StatusOr<runtime::v1::ContainerStatusResponse> status = Status(*stopped);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->status().state(), runtime::v1::CONTAINER_EXITED);
  EXPECT_EQ(status->status().exit_code(), 128 + SIGKILL);
  EXPECT_EQ(status->status().message(), "stopped before it was started");
  EXPECT_EQ(Start(*stopped).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(in_runtime(*stopped));
  EXPECT_TRUE(Remove(*stopped).ok());
}

TEST_P(ContainerTest, SurvivesBerthdBeingKilled) {
  absl::StatusOr<std::string> running = CreateAndStart(Config("stays", {"sleep", "1000"}));
  ASSERT_TRUE(running.ok()) << running.status();
  absl::StatusOr<std::string> exits =
      CreateAndStart(Config("exits", {"sh", "-c", "sleep 2; exit 5"}));
  ASSERT_TRUE(exits.ok()) << exits.status();
  absl::StatusOr<std::string> created = Create(Config("created", {"true"}));
  ASSERT_TRUE(created.ok()) << created.status();
  const int pid = nlohmann::json::parse(Status(*running, true)->info().at("info"))["pid"];
  daemon_->Kill();
  // "exits" exits while berthd is down: its monitor writes the exit file.
  ASSERT_TRUE(Eventually([&] {
    return ::access(absl::StrCat(daemon_->run_root(), "/exits/", *exits).c_str(), F_OK) == 0;
  }));
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  EXPECT_EQ(State(*running), runtime::v1::CONTAINER_RUNNING);
  EXPECT_EQ(::kill(pid, 0), 0);
  absl::StatusOr<runtime::v1::ContainerStatusResponse> exited = Status(*exits);
  ASSERT_TRUE(exited.ok());
  EXPECT_EQ(exited->status().state(), runtime::v1::CONTAINER_EXITED);
  EXPECT_EQ(exited->status().exit_code(), 5);
  EXPECT_EQ(State(*created), runtime::v1::CONTAINER_CREATED);
  ASSERT_TRUE(Start(*created).ok());
  ASSERT_TRUE(AwaitExit(*created));
  ASSERT_TRUE(Stop(*running, 1).ok());
  EXPECT_EQ(State(*running), runtime::v1::CONTAINER_EXITED);
}

TEST_P(ContainerTest, StatsFromCgroupsAndTheWritableLayer) {
  absl::StatusOr<std::string> id = CreateAndStart(Config(
      "busy", {"sh", "-c", "dd if=/dev/zero of=/tmp/blob bs=1024 count=512; sleep 1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::ContainerStatsRequest r;
  r.set_container_id(*id);
  absl::StatusOr<runtime::v1::ContainerStatsResponse> stats;
  ASSERT_TRUE(Eventually([&] {
    stats = cri().Call(&RuntimeService::Stub::ContainerStats, r);
    return stats.ok() && stats->stats().writable_layer().used_bytes().value() >= 512 * 1024;
  })) << stats.status();
  EXPECT_EQ(stats->stats().attributes().id(), *id);
  EXPECT_GT(stats->stats().cpu().usage_core_nano_seconds().value(), 0u);
  EXPECT_GT(stats->stats().memory().working_set_bytes().value(), 0u);
  EXPECT_GT(stats->stats().writable_layer().inodes_used().value(), 0u);

  absl::StatusOr<runtime::v1::ListPodSandboxStatsResponse> pods = cri().Call(
      &RuntimeService::Stub::ListPodSandboxStats, runtime::v1::ListPodSandboxStatsRequest());
  ASSERT_TRUE(pods.ok()) << pods.status();
  ASSERT_EQ(pods->stats_size(), 1);
  const runtime::v1::LinuxPodSandboxStats& pod = pods->stats(0).linux();
  EXPECT_EQ(pod.network().default_interface().name(), "eth0");
  EXPECT_GT(pod.process().process_count().value(), 1u);
  ASSERT_EQ(pod.containers_size(), 1);
  EXPECT_EQ(pod.containers(0).attributes().id(), *id);
}

// kubelet reads the pod's network default interface without checking it: a pod whose pause
// has just died (its network namespace gone, not yet noticed) must not come with a network that
// lacks one.
TEST_P(ContainerTest, PodStatsWhileThePauseDies) {
  runtime::v1::PodSandboxStatusRequest r;
  r.set_pod_sandbox_id(pod_);
  r.set_verbose(true);
  absl::StatusOr<runtime::v1::PodSandboxStatusResponse> status =
      cri().Call(&RuntimeService::Stub::PodSandboxStatus, r);
  ASSERT_TRUE(status.ok()) << status.status();
  const int pause = nlohmann::json::parse(status->info().at("info"))["pid"].get<int>();
  ASSERT_GT(pause, 0);
  ASSERT_EQ(::kill(pause, SIGKILL), 0);
  size_t ready_polls = 0;
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<runtime::v1::ListPodSandboxStatsResponse> pods = cri().Call(
        &RuntimeService::Stub::ListPodSandboxStats, runtime::v1::ListPodSandboxStatsRequest());
    if (!pods.ok()) return false;
    for (const auto& p : pods->stats()) {
      if (p.linux().has_network()) {
        EXPECT_TRUE(p.linux().network().has_default_interface());
      }
    }
    absl::StatusOr<runtime::v1::PodSandboxStatusResponse> now =
        cri().Call(&RuntimeService::Stub::PodSandboxStatus, r);
    ++ready_polls;
    return now.ok() && now->status().state() == runtime::v1::SANDBOX_NOTREADY;
  }));
  EXPECT_GT(ready_polls, 0u);
}

TEST_P(ContainerTest, ContainerEventsAreStreamed) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  std::unique_ptr<grpc::ClientReader<runtime::v1::ContainerEventResponse>> reader =
      cri().runtime().GetContainerEvents(&context, runtime::v1::GetEventsRequest());
  // berthd sends the headers once it has subscribed the stream.
  reader->WaitForInitialMetadata();
  absl::StatusOr<std::string> id = CreateAndStart(Config("evented", {"sh", "-c", "exit 0"}));
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(AwaitExit(*id));
  ASSERT_TRUE(Remove(*id).ok());
  std::vector<runtime::v1::ContainerEventType> seen;
  runtime::v1::ContainerEventResponse event;
  while (seen.size() < 4 && reader->Read(&event)) {
    if (event.container_id() != *id) continue;
    seen.push_back(event.container_event_type());
    EXPECT_EQ(event.pod_sandbox_status().id(), pod_);
  }
  EXPECT_THAT(seen, ::testing::ElementsAre(runtime::v1::CONTAINER_CREATED_EVENT,
                                           runtime::v1::CONTAINER_STARTED_EVENT,
                                           runtime::v1::CONTAINER_STOPPED_EVENT,
                                           runtime::v1::CONTAINER_DELETED_EVENT));
  context.TryCancel();
}

TEST_P(ContainerTest, LongCallsHoldNoRequestThread) {
  // As on a node drain: more stops waiting out a grace period than gRPC has synchronous threads
  // (64). The stops and kubelet's reads meanwhile are all answered, none RESOURCE_EXHAUSTED.
  constexpr int kStops = 80;
  absl::StatusOr<std::string> id = CreateAndStart(
      Config("stubborn", {"sh", "-c", "trap '' TERM; while true; do sleep 1; done"}));
  ASSERT_TRUE(id.ok()) << id.status();
  std::atomic<int> stopping = kStops;
  std::vector<absl::Status> stopped(kStops);
  std::vector<std::thread> stops;
  for (int i = 0; i < kStops; ++i) {
    stops.emplace_back([&, i] {
      stopped[i] = Stop(*id, 3);
      --stopping;
    });
  }
  int reads = 0;
  while (stopping > 0) {
    absl::StatusOr<runtime::v1::ListContainersResponse> listed =
        cri().Call(&RuntimeService::Stub::ListContainers, runtime::v1::ListContainersRequest());
    EXPECT_TRUE(listed.ok()) << listed.status();
    absl::StatusOr<runtime::v1::ContainerStatusResponse> status = Status(*id);
    EXPECT_TRUE(status.ok()) << status.status();
    ++reads;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // kubelet's pace, roughly
  }
  for (std::thread& t : stops) t.join();
  for (const absl::Status& s : stopped) EXPECT_TRUE(s.ok()) << s;
  EXPECT_GT(reads, 0);
  EXPECT_EQ(State(*id), runtime::v1::CONTAINER_EXITED);
}

TEST_P(ContainerTest, ConcurrentPodsAndContainersAreAllRecorded) {
  // Sandboxes, containers and images share berth.db: concurrent writes must neither fail nor
  // corrupt it, and a restarted berthd must know every one of them.
  constexpr int kPods = 10;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kPods);
  for (int i = 0; i < kPods; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<std::string> pod = RunPod(absl::StrCat("many-", i));
      if (!pod.ok()) {
        results[i] = pod.status();
        return;
      }
      runtime::v1::ContainerConfig config = Config(absl::StrCat("c", i), {"sleep", "1000"});
      absl::StatusOr<std::string> id = Create(config, *pod);
      results[i] = id.ok() ? Start(*id) : id.status();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& r : results) EXPECT_TRUE(r.ok()) << r;
  daemon_->Kill();
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  runtime::v1::ListContainersRequest list;
  list.mutable_filter()->mutable_state()->set_state(runtime::v1::CONTAINER_RUNNING);
  absl::StatusOr<runtime::v1::ListContainersResponse> running =
      cri().Call(&RuntimeService::Stub::ListContainers, list);
  ASSERT_TRUE(running.ok());
  EXPECT_EQ(running->containers_size(), kPods);
  absl::StatusOr<CommandResult> check = RunCommand(
      {"/usr/bin/sqlite3", daemon_->root() + "/berth.db", "PRAGMA integrity_check"});
  if (check.ok()) {
    EXPECT_EQ(check->output, "ok\n");  // when the sqlite3 tool is installed
  }
}

// The remote-command protocol over SPDY, as kubectl and crictl speak it.
struct StreamSession {
  std::unique_ptr<SpdyClient> client;
  std::map<std::string, uint32_t> streams;
};

absl::StatusOr<StreamSession> OpenStreams(
    const std::string& url, const std::vector<std::string>& types,
    const std::vector<std::string>& offered = {"v4.channel.k8s.io", "v3.channel.k8s.io"}) {
  SpdyClient::Upgrade upgrade;
  absl::StatusOr<std::unique_ptr<SpdyClient>> client = SpdyClient::Connect(url, offered, &upgrade);
  if (!client.ok()) return client.status();
  if (upgrade.protocol != offered[0]) {
    return absl::InternalError("negotiated " + upgrade.protocol);
  }
  StreamSession s;
  s.client = *std::move(client);
  for (const std::string& type : types) {
    absl::StatusOr<uint32_t> id = s.client->Open({{"streamtype", type}});
    if (!id.ok()) return id.status();
    s.streams[type] = *id;
  }
  return s;
}

TEST_P(ContainerTest, StreamingExecCarriesStdioAndTheExitCode) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("shell", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::ExecRequest r;
  r.set_container_id(*id);
  for (const char* a : {"sh", "-c", "cat; echo err >&2; exit 3"}) r.add_cmd(a);
  r.set_stdin(true);
  r.set_stdout(true);
  r.set_stderr(true);
  absl::StatusOr<runtime::v1::ExecResponse> exec = cri().Call(&RuntimeService::Stub::Exec, r);
  ASSERT_TRUE(exec.ok()) << exec.status();
  absl::StatusOr<StreamSession> s = OpenStreams(exec->url(), {"error", "stdin", "stdout", "stderr"});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->client->Send(s->streams["stdin"], "hello\n", /*fin=*/true).ok());
  ASSERT_TRUE(s->client->AwaitEnd(s->streams["error"], absl::Seconds(20)));
  EXPECT_EQ(s->client->Received(s->streams["stdout"]), "hello\n");
  EXPECT_EQ(s->client->Received(s->streams["stderr"]), "err\n");
  nlohmann::json status = nlohmann::json::parse(s->client->Received(s->streams["error"]));
  EXPECT_EQ(status["status"], "Failure");
  EXPECT_EQ(status["reason"], "NonZeroExitCode");
  EXPECT_EQ(status["details"]["causes"][0]["message"], "3");

  // The URL was for one use; an unknown token is refused too.
  SpdyClient::Upgrade refused;
  EXPECT_FALSE(SpdyClient::Connect(exec->url(), {"v4.channel.k8s.io"}, &refused).ok());
  EXPECT_EQ(refused.http_status, 404);
  const std::string forged = exec->url().substr(0, exec->url().rfind('/')) + "/forged";
  EXPECT_FALSE(SpdyClient::Connect(forged, {"v4.channel.k8s.io"}, &refused).ok());
  EXPECT_EQ(refused.http_status, 404);

  // The operator's count: one exec session started and ended, two requests refused for their
  // token; the container's monitor is alive.
  s->client.reset();
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<HttpResponse> m = HttpGet(daemon_->metrics_address(), "/metrics");
    return m.ok() && absl::StrContains(m->body, R"(berth_streaming_sessions{kind="exec"} 0)");
  }));
  absl::StatusOr<HttpResponse> metrics = HttpGet(daemon_->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_streaming_sessions_total{kind="exec"} 1)"));
  EXPECT_THAT(metrics->body,
              HasSubstr(R"(berth_streaming_sessions_refused_total{kind="unknown"} 2)"));
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_container_monitors{state="alive"} 1)"));
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_container_monitors{state="gone"} 0)"));
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_pod_monitors{state="alive"} 1)"));
}

TEST_P(ContainerTest, StreamingExecV3ReportsFailuresAsText) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("v3", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::ExecRequest r;
  r.set_container_id(*id);
  for (const char* a : {"sh", "-c", "echo out; exit 2"}) r.add_cmd(a);
  r.set_stdout(true);
  absl::StatusOr<runtime::v1::ExecResponse> exec = cri().Call(&RuntimeService::Stub::Exec, r);
  ASSERT_TRUE(exec.ok()) << exec.status();
  absl::StatusOr<StreamSession> s =
      OpenStreams(exec->url(), {"error", "stdout"}, {"v3.channel.k8s.io"});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->client->AwaitEnd(s->streams["error"], absl::Seconds(20)));
  EXPECT_EQ(s->client->Received(s->streams["stdout"]), "out\n");
  EXPECT_EQ(s->client->Received(s->streams["error"]),
            "command terminated with non-zero exit code: exit status 2");
}

TEST_P(ContainerTest, StreamingExecWithATtyFollowsResizes) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("tty", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::ExecRequest r;
  r.set_container_id(*id);
  // runc applies sizes to the container's terminal asynchronously (at start, then on SIGWINCH):
  // the shell polls until it sees the size it expects, for up to 10 s.
  const char* script =
      "wait_for() { i=0; while [ $i -lt 100 ]; do s=$(stty size 2>/dev/null); "
      "[ \"$s\" = \"$1\" ] && break; sleep 0.1; i=$((i+1)); done; echo \"size $s\"; }; "
      "wait_for '30 100'; read x; wait_for '40 120'; exit 0";
  for (const char* a : {"sh", "-c", script}) r.add_cmd(a);
  r.set_stdin(true);
  r.set_stdout(true);
  r.set_tty(true);
  absl::StatusOr<runtime::v1::ExecResponse> exec = cri().Call(&RuntimeService::Stub::Exec, r);
  ASSERT_TRUE(exec.ok()) << exec.status();
  absl::StatusOr<StreamSession> s = OpenStreams(exec->url(), {"error", "stdin", "stdout", "resize"});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(s->client->Send(s->streams["resize"], R"({"Width":100,"Height":30})").ok());
  ASSERT_TRUE(s->client->AwaitData(s->streams["stdout"], "size 30 100", absl::Seconds(20)))
      << s->client->Received(s->streams["stdout"]);
  ASSERT_TRUE(s->client->Send(s->streams["resize"], R"({"Width":120,"Height":40})").ok());
  ASSERT_TRUE(s->client->Send(s->streams["stdin"], "\n").ok());
  ASSERT_TRUE(s->client->AwaitData(s->streams["stdout"], "size 40 120", absl::Seconds(20)))
      << s->client->Received(s->streams["stdout"]);
  ASSERT_TRUE(s->client->AwaitEnd(s->streams["error"], absl::Seconds(20)));
  EXPECT_THAT(s->client->Received(s->streams["error"]), HasSubstr("Success"));
}

TEST_P(ContainerTest, StreamingAttachFollowsTheOutput) {
  absl::StatusOr<std::string> id =
      CreateAndStart(Config("talker", {"sh", "-c", "while true; do echo tick; sleep 0.2; done"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::AttachRequest r;
  r.set_container_id(*id);
  r.set_stdout(true);
  r.set_stderr(true);
  absl::StatusOr<runtime::v1::AttachResponse> attach = cri().Call(&RuntimeService::Stub::Attach, r);
  ASSERT_TRUE(attach.ok()) << attach.status();
  absl::StatusOr<StreamSession> s = OpenStreams(attach->url(), {"error", "stdout", "stderr"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->client->AwaitData(s->streams["stdout"], "tick\ntick\n", absl::Seconds(20)));
  // The container's end ends the session.
  ASSERT_TRUE(Stop(*id, 0).ok());
  EXPECT_TRUE(s->client->AwaitEnd(s->streams["error"], absl::Seconds(20)));
}

TEST_P(ContainerTest, PortForwardReachesAServerInThePod) {
  absl::StatusOr<std::string> id = CreateAndStart(Config(
      "web", {"sh", "-c",
              "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && "
              "exec httpd -f -p 8080 -h /tmp/www"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::PortForwardRequest r;
  r.set_pod_sandbox_id(pod_);
  r.add_port(8080);
  absl::StatusOr<runtime::v1::PortForwardResponse> pf =
      cri().Call(&RuntimeService::Stub::PortForward, r);
  ASSERT_TRUE(pf.ok()) << pf.status();
  SpdyClient::Upgrade upgrade;
  absl::StatusOr<std::unique_ptr<SpdyClient>> client =
      SpdyClient::Connect(pf->url(), {"portforward.k8s.io"}, &upgrade);
  ASSERT_TRUE(client.ok()) << client.status() << upgrade.body;
  // httpd may need a moment to listen: one request id per attempt.
  bool served = false;
  for (int attempt = 0; attempt < 20 && !served; ++attempt) {
    const std::string rid = std::to_string(attempt);
    absl::StatusOr<uint32_t> error =
        (*client)->Open({{"streamtype", "error"}, {"port", "8080"}, {"requestid", rid}});
    absl::StatusOr<uint32_t> data =
        (*client)->Open({{"streamtype", "data"}, {"port", "8080"}, {"requestid", rid}});
    ASSERT_TRUE(error.ok() && data.ok());
    ASSERT_TRUE((*client)->Send(*data, "GET /index.html HTTP/1.0\r\n\r\n").ok());
    // The data stream ends either way: after the answer, or at once when nothing listens yet
    // (not waiting longer: the fixture's idle timeout is 3 s).
    (*client)->AwaitEnd(*data, absl::Seconds(2));
    served = absl::StrContains((*client)->Received(*data), "hello-from-pod");
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(served) << daemon_->Log();
  // A port nothing listens on: the error stream says so.
  absl::StatusOr<uint32_t> error =
      (*client)->Open({{"streamtype", "error"}, {"port", "9999"}, {"requestid", "x"}});
  absl::StatusOr<uint32_t> data =
      (*client)->Open({{"streamtype", "data"}, {"port", "9999"}, {"requestid", "x"}});
  ASSERT_TRUE(error.ok() && data.ok());
  EXPECT_TRUE((*client)->AwaitData(*error, "9999", absl::Seconds(10)));
}

TEST_P(ContainerTest, IdleStreamsAreClosed) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("idle", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::ExecRequest r;
  r.set_container_id(*id);
  for (const char* a : {"sleep", "77"}) r.add_cmd(a);
  r.set_stdout(true);
  absl::StatusOr<runtime::v1::ExecResponse> exec = cri().Call(&RuntimeService::Stub::Exec, r);
  ASSERT_TRUE(exec.ok()) << exec.status();
  absl::StatusOr<StreamSession> s = OpenStreams(exec->url(), {"error", "stdout"});
  ASSERT_TRUE(s.ok()) << s.status();
  // streaming.idle_timeout is 3s in this fixture.
  EXPECT_TRUE(s->client->AwaitClosed(absl::Seconds(15)));
  absl::StatusOr<runtime::v1::ExecSyncResponse> ps = Exec(*id, {"ps"});
  ASSERT_TRUE(ps.ok());
  EXPECT_THAT(ps->stdout(), Not(HasSubstr("sleep 77")));  // the session's process is gone
}

TEST_P(ContainerTest, WebSocketExecV5ClosesStdinAndCarriesTheExitCode) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("wsexec", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::ExecRequest r;
  r.set_container_id(*id);
  for (const char* a : {"sh", "-c", "cat; echo err >&2; exit 5"}) r.add_cmd(a);
  r.set_stdin(true);
  r.set_stdout(true);
  r.set_stderr(true);
  absl::StatusOr<runtime::v1::ExecResponse> exec = cri().Call(&RuntimeService::Stub::Exec, r);
  ASSERT_TRUE(exec.ok()) << exec.status();
  absl::StatusOr<std::unique_ptr<WsClient>> ws =
      WsClient::Connect(exec->url(), {"v5.channel.k8s.io", "v4.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ((*ws)->protocol(), "v5.channel.k8s.io");
  ASSERT_TRUE((*ws)->Send(0, "over websocket\n").ok());
  ASSERT_TRUE((*ws)->Send(255, std::string(1, '\0')).ok());  // v5: close stdin
  ASSERT_TRUE((*ws)->AwaitData(3, "NonZeroExitCode", absl::Seconds(20))) << (*ws)->Received(3);
  EXPECT_EQ((*ws)->Received(1), "over websocket\n");
  EXPECT_EQ((*ws)->Received(2), "err\n");
  EXPECT_THAT((*ws)->Received(3), HasSubstr(R"("message":"5")"));
  EXPECT_TRUE((*ws)->AwaitClosed(absl::Seconds(10)));
  // Not a protocol berth speaks: refused.
  runtime::v1::ExecRequest again = r;
  absl::StatusOr<runtime::v1::ExecResponse> exec2 = cri().Call(&RuntimeService::Stub::Exec, again);
  ASSERT_TRUE(exec2.ok());
  EXPECT_FALSE(WsClient::Connect(exec2->url(), {"v1.channel.k8s.io"}).ok());
}

TEST_P(ContainerTest, WebSocketAttachV4FollowsTheOutput) {
  absl::StatusOr<std::string> id =
      CreateAndStart(Config("wstalker", {"sh", "-c", "while true; do echo tock; sleep 0.2; done"}));
  ASSERT_TRUE(id.ok()) << id.status();
  runtime::v1::AttachRequest r;
  r.set_container_id(*id);
  r.set_stdout(true);
  absl::StatusOr<runtime::v1::AttachResponse> attach = cri().Call(&RuntimeService::Stub::Attach, r);
  ASSERT_TRUE(attach.ok()) << attach.status();
  absl::StatusOr<std::unique_ptr<WsClient>> ws = WsClient::Connect(attach->url(), {"v4.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_TRUE((*ws)->AwaitData(1, "tock\ntock\n", absl::Seconds(20)));
  ASSERT_TRUE(Stop(*id, 0).ok());
  EXPECT_TRUE((*ws)->AwaitData(3, "Success", absl::Seconds(20)));
}

TEST_P(ContainerTest, WebSocketChannelPortForward) {
  absl::StatusOr<std::string> id = CreateAndStart(Config(
      "wsweb", {"sh", "-c",
                "mkdir -p /tmp/www && echo hello-over-channels > /tmp/www/index.html && "
                "exec httpd -f -p 8080 -h /tmp/www"}));
  ASSERT_TRUE(id.ok()) << id.status();
  bool served = false;
  for (int attempt = 0; attempt < 20 && !served; ++attempt) {
    runtime::v1::PortForwardRequest r;
    r.set_pod_sandbox_id(pod_);
    absl::StatusOr<runtime::v1::PortForwardResponse> pf =
        cri().Call(&RuntimeService::Stub::PortForward, r);
    ASSERT_TRUE(pf.ok()) << pf.status();
    absl::StatusOr<std::unique_ptr<WsClient>> ws =
        WsClient::Connect(pf->url() + "?port=8080", {"v4.channel.k8s.io"});
    ASSERT_TRUE(ws.ok()) << ws.status();
    // Each channel opens with its port, two bytes little-endian: 8080 = 0x1f90.
    ASSERT_TRUE((*ws)->AwaitData(0, "\x90\x1f", absl::Seconds(10)));
    ASSERT_TRUE((*ws)->Send(0, "GET /index.html HTTP/1.0\r\n\r\n").ok());
    served = (*ws)->AwaitData(0, "hello-over-channels", absl::Seconds(2));
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(served);
}

// A WebSocket handshake done by hand, so that the test can then send frames no real client
// would: the socket after the 101, or -1.
int RawWebSocket(const std::string& url, const std::string& protocol) {
  const size_t host_start = url.find("://") + 3;
  const size_t path_start = url.find('/', host_start);
  const std::string host = url.substr(host_start, path_start - host_start);
  int port = 0;
  if (!absl::SimpleAtoi(host.substr(host.rfind(':') + 1), &port)) return -1;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const std::string request = absl::StrCat(
      "GET ", url.substr(path_start), " HTTP/1.1\r\nHost: ", host,
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: ",
      protocol, "\r\n\r\n");
  (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string head;
  char c;
  while (!absl::EndsWith(head, "\r\n\r\n") && ::recv(fd, &c, 1, 0) == 1) head += c;
  if (!absl::StartsWith(head, "HTTP/1.1 101")) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One frame as a client would send it (masked unless told otherwise).
std::string WsFrame(int opcode, const std::string& payload, bool fin = true, bool masked = true,
                    int rsv = 0) {
  std::string f(1, static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode));
  const char mask_bit = masked ? '\x80' : '\0';
  if (payload.size() < 126) {
    f += static_cast<char>(mask_bit | static_cast<char>(payload.size()));
  } else if (payload.size() < 65536) {
    f += static_cast<char>(mask_bit | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xff);
  } else {
    f += static_cast<char>(mask_bit | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((payload.size() >> (8 * i)) & 0xff);
  }
  const char key[4] = {0x11, 0x22, 0x33, 0x44};
  if (masked) f.append(key, 4);
  for (size_t i = 0; i < payload.size(); ++i) {
    f += masked ? static_cast<char>(payload[i] ^ key[i % 4]) : payload[i];
  }
  return f;
}

// The status code of the close frame the server sends within `seconds` before it ends the
// connection (data frames before it are skipped), or -1 if it ends it without one or not at all.
int CloseCodeWithin(int fd, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::string in;
  char buf[4096];
  int code = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return code;
    in.append(buf, static_cast<size_t>(n));
    // Server frames are unmasked; only short ones come before a close here.
    while (in.size() >= 2 && static_cast<unsigned char>(in[1]) < 126 &&
           in.size() >= 2 + static_cast<size_t>(in[1])) {
      const size_t length = static_cast<size_t>(in[1]);
      if ((in[0] & 0x0f) == 8 && length >= 2) {
        code = (static_cast<unsigned char>(in[2]) << 8) | static_cast<unsigned char>(in[3]);
      }
      in.erase(0, 2 + length);
    }
  }
  return -1;
}

// Malformed SPDY and WebSocket input ends only the connection that sent it: berthd keeps serving,
// the container keeps running, and the next session works.
TEST_P(ContainerTest, MalformedStreamInputEndsOnlyThatConnection) {
  if (!IsDefaultMonitor()) GTEST_SKIP() << "streaming does not depend on the monitor";
  absl::StatusOr<std::string> id = CreateAndStart(Config("target", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  auto exec_url = [&](bool tty) {
    runtime::v1::ExecRequest r;
    r.set_container_id(*id);
    for (const char* a : {"cat"}) r.add_cmd(a);
    r.set_stdin(true);
    r.set_stdout(true);
    r.set_tty(tty);
    r.set_stderr(!tty);
    absl::StatusOr<runtime::v1::ExecResponse> exec = cri().Call(&RuntimeService::Stub::Exec, r);
    EXPECT_TRUE(exec.ok()) << exec.status();
    return exec.ok() ? exec->url() : std::string();
  };
  auto be32 = [](uint32_t v) {
    std::string out;
    for (int i = 3; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
    return out;
  };
  auto block = [&](const std::vector<std::pair<std::string, std::string>>& headers) {
    std::string b = be32(static_cast<uint32_t>(headers.size()));
    for (const auto& [k, v] : headers) absl::StrAppend(&b, be32(k.size()), k, be32(v.size()), v);
    return b;
  };
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 300; ++i) many.emplace_back(absl::StrCat("h", i), "v");

  struct SpdyCase {
    std::string name;
    std::function<absl::Status(SpdyClient&)> send;
  };
  const std::vector<SpdyCase> spdy_cases = {
      {"a control frame of SPDY version 2",
       [&](SpdyClient& c) { return c.SendRaw(be32(0x80020004) + be32(8) + be32(0) + be32(0)); }},
      {"a SYN_STREAM whose header block is not zlib",
       [&](SpdyClient& c) {
         return c.SendRaw(be32(0x80030001) + be32(20) + be32(1) + be32(0) + std::string(2, '\0') +
                          "notzlib!garb");
       }},
      {"a header block that inflates past 64 KiB",
       [&](SpdyClient& c) {
         return c.SendSynStream(1, block({{"streamtype", std::string(200 << 10, 'a')}}));
       }},
      {"300 headers", [&](SpdyClient& c) { return c.SendSynStream(1, block(many)); }},
      {"a header block claiming more headers than it has",
       [&](SpdyClient& c) { return c.SendSynStream(1, be32(1000) + be32(3) + "abc"); }},
      {"a data frame of 16 MiB", [&](SpdyClient& c) { return c.SendRaw(be32(1) + be32(0xffffff)); }},
  };
  for (const SpdyCase& test : spdy_cases) {
    SCOPED_TRACE(test.name);
    const std::string url = exec_url(false);
    SpdyClient::Upgrade upgrade;
    absl::StatusOr<std::unique_ptr<SpdyClient>> client =
        SpdyClient::Connect(url, {"v4.channel.k8s.io"}, &upgrade);
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE(test.send(**client).ok());
    EXPECT_TRUE((*client)->AwaitClosed(absl::Seconds(10)));
    // Told why (an idle end would say 0).
    EXPECT_EQ((*client)->GoAwayStatus(), std::optional<uint32_t>(1));
  }

  struct WsCase {
    std::string name;
    std::string frames;
  };
  const std::vector<WsCase> ws_cases = {
      {"an unmasked frame", WsFrame(2, std::string("\0x", 2), true, /*masked=*/false)},
      {"a message over 1 MiB", WsFrame(2, std::string((1 << 20) + 16, '\0'))},
      {"a message over 1 MiB in fragments",
       WsFrame(2, std::string(600 << 10, '\0'), false) + WsFrame(0, std::string(600 << 10, '\0'))},
      {"reserved bits without an extension", WsFrame(2, std::string("\0x", 2), true, true, 4)},
      {"a ping longer than 125 bytes", WsFrame(9, std::string(200, 'p'))},
      {"a fragmented ping", WsFrame(9, "p", /*fin=*/false)},
      {"a text frame that is not UTF-8", WsFrame(1, "\xff\xfe\xfd")},
      {"an unknown opcode", WsFrame(5, "x")},
      {"a continuation with nothing to continue", WsFrame(0, "x")},
  };
  for (const WsCase& test : ws_cases) {
    SCOPED_TRACE(test.name);
    const int fd = RawWebSocket(exec_url(false), "v5.channel.k8s.io");
    ASSERT_GE(fd, 0);
    (void)!::send(fd, test.frames.data(), test.frames.size(), MSG_NOSIGNAL);
    // 1002 protocol error, 1007 bad data, 1009 too big (an idle end sends no close frame).
    EXPECT_THAT(CloseCodeWithin(fd, 10), ::testing::AnyOf(1002, 1007, 1009));
    ::close(fd);
  }

  // Messages that are well-formed WebSocket but mean nothing are ignored: the session goes on.
  absl::StatusOr<std::unique_ptr<WsClient>> ws =
      WsClient::Connect(exec_url(true), {"v5.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  for (const std::string& resize :
       {std::string(R"({"Width":"wide","Height":2})"), std::string(R"({"Width":0,"Height":0})"),
        std::string("[1,2]"), std::string(8 << 10, '{')}) {
    ASSERT_TRUE((*ws)->Send(4, resize).ok());
  }
  ASSERT_TRUE((*ws)->Send(42, "to no channel").ok());
  ASSERT_TRUE((*ws)->Send(0, "still here\n").ok());
  EXPECT_TRUE((*ws)->AwaitData(1, "still here", absl::Seconds(10))) << (*ws)->Received(1);

  // berthd and the container are fine, and a well-behaved session still works.
  absl::StatusOr<runtime::v1::ExecSyncResponse> echo = Exec(*id, {"echo", "alive"});
  ASSERT_TRUE(echo.ok()) << echo.status() << daemon_->Log();
  EXPECT_EQ(echo->stdout(), "alive\n");
  EXPECT_EQ(State(*id), runtime::v1::CONTAINER_RUNNING);
}

TEST_P(ContainerTest, PauseImageRunsTheInfraProcess) {
  // A pause image made of berth-pause itself, pulled by berthd on the first RunPodSandbox.
  absl::StatusOr<std::string> pause_binary =
      ReadFile(std::filesystem::path(daemon_->binary()).parent_path().parent_path() /
               "libexec/berth/berth-pause");
  ASSERT_TRUE(pause_binary.ok()) << pause_binary.status();
  ImageSpec spec;
  spec.entrypoint = {"/pause"};
  spec.user = "65535:65535";
  LayerBuilder layer;
  layer.File("pause", *pause_binary, 0755);
  ASSERT_TRUE(registry_->Push("pause", "e2e", BuildImage({layer.Build()}, spec)).ok());
  daemon_->Kill();
  {
    std::ofstream yaml(daemon_->config_path(), std::ios::app);
    yaml << "pause: {image: \"" << registry_->host() << "/pause:e2e\"}\n";
  }
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  absl::StatusOr<std::string> pod = RunPod("imagepause");
  ASSERT_TRUE(pod.ok()) << pod.status() << daemon_->Log();
  runtime::v1::PodSandboxStatusRequest r;
  r.set_pod_sandbox_id(*pod);
  r.set_verbose(true);
  absl::StatusOr<runtime::v1::PodSandboxStatusResponse> status =
      cri().Call(&RuntimeService::Stub::PodSandboxStatus, r);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->status().state(), runtime::v1::SANDBOX_READY);
  nlohmann::json info = nlohmann::json::parse(status->info().at("info"));
  EXPECT_THAT(info["runtimeSpec"]["root"]["path"].get<std::string>(),
              HasSubstr("/sandboxes/" + *pod + "/rootfs"));
  // The image is in the store now, and a container runs in the pod as usual.
  EXPECT_TRUE(cri().ImageStatus(registry_->host() + "/pause:e2e").ok());
  absl::StatusOr<std::string> c = Create(Config("inimagepod", {"true"}), *pod);
  ASSERT_TRUE(c.ok()) << c.status();
  // TearDown removes the pods and checks that no mount (the pause's overlay) is left.
}

TEST_P(ContainerTest, AMonitorThatDiesIsNoticed) {
  absl::StatusOr<std::string> id = CreateAndStart(Config("orphan", {"sleep", "1000"}));
  ASSERT_TRUE(id.ok()) << id.status();
  const int monitor =
      nlohmann::json::parse(Status(*id, true)->info().at("info"))["monitorPid"].get<int>();
  ASSERT_GT(monitor, 0);
  ASSERT_EQ(::kill(monitor, SIGKILL), 0);
  ASSERT_TRUE(AwaitExit(*id));
  absl::StatusOr<runtime::v1::ContainerStatusResponse> status = Status(*id);
  EXPECT_EQ(status->status().reason(), "Error");
  EXPECT_THAT(status->status().message(), HasSubstr("monitor"));
  EXPECT_TRUE(Remove(*id).ok());  // and its process goes with it (TearDown checks)
}

TEST_P(ContainerTest, AfterARebootEverythingIsExitedAndCanBeRemoved) {
  absl::StatusOr<std::string> running = CreateAndStart(Config("before-reboot", {"sleep", "1000"}));
  ASSERT_TRUE(running.ok()) << running.status();
  absl::StatusOr<std::string> created = Create(Config("never-started", {"true"}));
  ASSERT_TRUE(created.ok()) << created.status();
  daemon_->Kill();
  // What a reboot does: every process gone, every mount gone, run_root (a tmpfs) empty.
  RunCommand({"/usr/bin/pkill", "-9", "-f", "conmon.*" + daemon_->dir()}).IgnoreError();
  absl::StatusOr<CommandResult> list = RunCommand(
      {"/usr/sbin/runc", "--root", daemon_->run_root() + "/runc", "list", "-q"});
  ASSERT_TRUE(list.ok());
  for (absl::string_view id : absl::StrSplit(list->output, '\n', absl::SkipEmpty())) {
    RunCommand({"/usr/sbin/runc", "--root", daemon_->run_root() + "/runc", "delete", "--force",
                std::string(id)})
        .IgnoreError();
  }
  absl::StatusOr<CommandResult> mounts = RunCommand({"/bin/cat", "/proc/self/mountinfo"});
  ASSERT_TRUE(mounts.ok());
  std::vector<std::string> targets;
  for (absl::string_view line : absl::StrSplit(mounts->output, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() > 4 && absl::StartsWith(f[4], daemon_->dir())) targets.emplace_back(f[4]);
  }
  std::sort(targets.rbegin(), targets.rend());  // children first
  for (const std::string& t : targets) RunCommand({"/bin/umount", "-l", t}).IgnoreError();
  std::filesystem::remove_all(daemon_->run_root());

  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  absl::StatusOr<runtime::v1::ContainerStatusResponse> was_running = Status(*running);
  ASSERT_TRUE(was_running.ok());
  EXPECT_EQ(was_running->status().state(), runtime::v1::CONTAINER_EXITED);
  EXPECT_NE(was_running->status().exit_code(), 0);
  EXPECT_EQ(State(*created), runtime::v1::CONTAINER_EXITED);
  runtime::v1::PodSandboxStatusRequest pod;
  pod.set_pod_sandbox_id(pod_);
  absl::StatusOr<runtime::v1::PodSandboxStatusResponse> pod_status =
      cri().Call(&RuntimeService::Stub::PodSandboxStatus, pod);
  ASSERT_TRUE(pod_status.ok());
  EXPECT_EQ(pod_status->status().state(), runtime::v1::SANDBOX_NOTREADY);
  // kubelet then removes them all; TearDown checks that nothing is left.
  EXPECT_TRUE(Remove(*running).ok());
  runtime::v1::RemovePodSandboxRequest remove;
  remove.set_pod_sandbox_id(pod_);
  absl::Status removed = cri().Call(&RuntimeService::Stub::RemovePodSandbox, remove).status();
  EXPECT_TRUE(removed.ok()) << removed << daemon_->Log();
}

// A pod that names no log_directory (crictl's, critest's) has its containers' logs kept under
// berth's root; they go with the pod.
TEST_P(ContainerTest, WithoutALogDirectoryLogsAreKeptUntilThePodGoes) {
  runtime::v1::RunPodSandboxRequest run;
  *run.mutable_config() = PodConfig("nologdir");
  run.mutable_config()->clear_log_directory();
  absl::StatusOr<runtime::v1::RunPodSandboxResponse> pod =
      cri().Call(&RuntimeService::Stub::RunPodSandbox, run);
  ASSERT_TRUE(pod.ok()) << pod.status();
  runtime::v1::ContainerConfig config = Config("says", {"echo", "said"});
  absl::StatusOr<std::string> id = Create(config, pod->pod_sandbox_id());
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(Start(*id).ok());
  ASSERT_TRUE(AwaitExit(*id));
  const std::string dir = daemon_->root() + "/logs/" + pod->pod_sandbox_id();
  EXPECT_EQ(Status(*id)->status().log_path(), dir + "/says.log");
  absl::StatusOr<std::string> log = ReadFile(dir + "/says.log");
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_THAT(*log, HasSubstr(" stdout F said\n"));
  runtime::v1::RemovePodSandboxRequest remove;
  remove.set_pod_sandbox_id(pod->pod_sandbox_id());
  ASSERT_TRUE(cri().Call(&RuntimeService::Stub::RemovePodSandbox, remove).ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// berth-conmon's default keeps a pod's containers in one monitor: the pause's and every
// container's monitorPid are one process, which records each exit while the others run and ends
// with the pod. The other modes have one monitor per container.
TEST_P(ContainerTest, MonitorsAreOnePerPodOrOnePerContainerAsConfigured) {
  const bool per_pod = IsDefaultMonitor();
  absl::StatusOr<std::string> a = CreateAndStart(Config("runs", {"sleep", "1000"}));
  ASSERT_TRUE(a.ok()) << a.status();
  // Counted while it runs (a container has its monitor from its start on; one that has exited
  // may have taken it along): it ends when told to.
  absl::StatusOr<std::string> b = CreateAndStart(Config(
      "ends", {"sh", "-c", "while [ ! -e /tmp/end ]; do sleep 0.05; done; echo done; exit 3"}));
  ASSERT_TRUE(b.ok()) << b.status();
  auto monitor_of = [&](const std::string& id) {
    return nlohmann::json::parse(Status(id, true)->info().at("info"))["monitorPid"].get<int>();
  };
  const int monitor = monitor_of(*a);
  ASSERT_GT(monitor, 0);
  absl::StatusOr<std::string> pause_monitor =
      ReadFile(daemon_->root() + "/sandboxes/" + pod_ + "/conmon-pidfile");
  ASSERT_TRUE(pause_monitor.ok()) << pause_monitor.status();
  int monitors = 0;  // the processes that name the pod or its containers
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    absl::StatusOr<std::string> cmdline = ReadFile(entry.path().string() + "/cmdline");
    if (!cmdline.ok() || !absl::StrContains(*cmdline, "conmon")) continue;
    if (absl::StrContains(*cmdline, pod_) || absl::StrContains(*cmdline, *a) ||
        absl::StrContains(*cmdline, *b)) {
      ++monitors;
    }
  }
  if (per_pod) {
    EXPECT_EQ(monitor_of(*b), monitor);
    EXPECT_EQ(std::atoi(pause_monitor->c_str()), monitor);
    EXPECT_EQ(monitors, 1);
  } else {
    EXPECT_NE(monitor_of(*b), monitor);
    EXPECT_NE(std::atoi(pause_monitor->c_str()), monitor);
    EXPECT_EQ(monitors, 3);
  }

  ASSERT_TRUE(Exec(*b, {"touch", "/tmp/end"}).ok());
  ASSERT_TRUE(AwaitExit(*b));
  EXPECT_EQ(Status(*b)->status().exit_code(), 3);
  EXPECT_THAT(Log("ends"), HasSubstr(" stdout F done\n"));
  ASSERT_TRUE(Remove(*b).ok());
  EXPECT_EQ(::kill(monitor, 0), 0);
  EXPECT_EQ(State(*a), runtime::v1::CONTAINER_RUNNING);
  absl::StatusOr<runtime::v1::ExecSyncResponse> exec = Exec(*a, {"echo", "still here"});
  ASSERT_TRUE(exec.ok()) << exec.status();
  EXPECT_EQ(exec->stdout(), "still here\n");

  runtime::v1::StopPodSandboxRequest stop;
  stop.set_pod_sandbox_id(pod_);
  ASSERT_TRUE(cri().Call(&RuntimeService::Stub::StopPodSandbox, stop).ok());
  EXPECT_EQ(State(*a), runtime::v1::CONTAINER_EXITED);
  EXPECT_TRUE(Eventually([&] { return ::kill(monitor, 0) != 0; }));
}

INSTANTIATE_TEST_SUITE_P(Monitors, ContainerTest,
                         // Upstream conmon is cri-o's setup: ExecSync by the runtime's exec there,
                         // berth-exec in the others.
                         ::testing::Values(MonitorParam{}, MonitorParam{"", "container"},
                                           MonitorParam{"/usr/bin/conmon", "", "runtime"}),
                         [](const auto& info) {
                           return std::string(info.index == 0   ? "BerthConmon"
                                              : info.index == 1 ? "BerthConmonPerContainer"
                                                                : "UpstreamConmon");
                         });

}  // namespace
}  // namespace berth::testing
