// Pod sandboxes through a running berthd: runc, upstream conmon (until berth-conmon exists), the
// CNI bridge plugin on a bridge and subnet of the test's own.

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/e2e/leaks.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/eventually.h"
#include "test/lib/http.h"
#include "test/lib/process.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using runtime::v1::RuntimeService;

constexpr char kBridge[] = "berthe2e1";

class SandboxTest : public ::testing::Test {
 protected:
  // The daemon's options; tests that need others set them before SetUp via a subclass.
  virtual BerthDaemon::Options DaemonOptions() { return {}; }
  virtual std::string ExtraPlugins() { return ""; }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "pods need root";
    for (const char* tool : {"/usr/sbin/runc", "/usr/bin/conmon", "/usr/lib/cni/bridge"}) {
      if (::access(tool, X_OK) != 0) GTEST_SKIP() << tool << " is not installed";
    }
    auto daemon = BerthDaemon::Create(DaemonOptions());
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    ASSERT_TRUE(WriteFileAtomic(daemon_->cni_dir() + "/10-e2e.conflist",
                                absl::StrCat(R"({"cniVersion": "1.0.0", "name": "e2e", "plugins": [
      {"type": "bridge", "bridge": ")", kBridge, R"(", "isGateway": true, "ipMasq": false,
       "ipam": {"type": "host-local", "dataDir": ")", daemon_->dir(), R"(/ipam",
                "ranges": [[{"subnet": "10.251.3.0/24"}]]}},
      {"type": "loopback"})", ExtraPlugins(), "]}"))
                    .ok());
    ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  }

  void TearDown() override {
    if (!daemon_) return;
    // Whatever a failed test left: the daemon's own removal first, then the bridge.
    if (daemon_->running()) {
      absl::StatusOr<runtime::v1::ListPodSandboxResponse> list =
          cri().Call(&RuntimeService::Stub::ListPodSandbox, runtime::v1::ListPodSandboxRequest());
      if (list.ok()) {
        for (const auto& item : list->items()) (void)Remove(item.id());
      }
    }
    daemon_.reset();
    RunCommand({"/usr/sbin/ip", "link", "del", kBridge}).IgnoreError();
  }

  CriClient& cri() { return daemon_->client(); }

  runtime::v1::RunPodSandboxRequest Request(const std::string& name) {
    runtime::v1::RunPodSandboxRequest request;
    runtime::v1::PodSandboxConfig* c = request.mutable_config();
    c->mutable_metadata()->set_name(name);
    c->mutable_metadata()->set_namespace_("e2e");
    c->mutable_metadata()->set_uid("uid-" + name);
    c->set_hostname(name);
    c->set_log_directory(daemon_->dir() + "/logs/" + name);
    (*c->mutable_labels())["app"] = name;
    c->mutable_dns_config()->add_servers("10.96.0.10");
    c->mutable_dns_config()->add_searches("e2e.svc.cluster.local");
    return request;
  }

  absl::StatusOr<std::string> Run(const runtime::v1::RunPodSandboxRequest& request) {
    absl::StatusOr<runtime::v1::RunPodSandboxResponse> r =
        cri().Call(&RuntimeService::Stub::RunPodSandbox, request);
    if (!r.ok()) return r.status();
    return r->pod_sandbox_id();
  }

  absl::StatusOr<runtime::v1::PodSandboxStatusResponse> Status(const std::string& id,
                                                               bool verbose = false) {
    runtime::v1::PodSandboxStatusRequest request;
    request.set_pod_sandbox_id(id);
    request.set_verbose(verbose);
    return cri().Call(&RuntimeService::Stub::PodSandboxStatus, request);
  }

  absl::Status Stop(const std::string& id) {
    runtime::v1::StopPodSandboxRequest request;
    request.set_pod_sandbox_id(id);
    return cri().Call(&RuntimeService::Stub::StopPodSandbox, request).status();
  }

  absl::Status Remove(const std::string& id) {
    runtime::v1::RemovePodSandboxRequest request;
    request.set_pod_sandbox_id(id);
    return cri().Call(&RuntimeService::Stub::RemovePodSandbox, request).status();
  }

  size_t IpReservations() { return ReservedAddresses(*daemon_).size(); }

  // Nothing of ours is left: namespaces, mounts, monitors, runtime state, IPs.
  void ExpectNoLeaks(const LeakScope& scope = {}) {
    EXPECT_THAT(FindLeaks(*daemon_, scope), ::testing::IsEmpty());
  }

  std::unique_ptr<BerthDaemon> daemon_;
};

// A plugin after the bridge that fails, a runtime whose create fails, a broken network config.
class FailureTest : public SandboxTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-e2e-bin.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    bin_ = tmpl;
    ASSERT_TRUE(WriteFileAtomic(bin_ + "/failer", R"(#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":7,"msg":"injected failure"}'
  exit 1
fi
exit 0
)", 0755).ok());
    ASSERT_TRUE(WriteFileAtomic(bin_ + "/broken-runtime", R"(#!/bin/sh
for a in "$@"; do
  case "$a" in create|run) echo "injected runtime failure" >&2; exit 1 ;; esac
done
exec /usr/sbin/runc "$@"
)", 0755).ok());
    // Makes the container but never lets it start: `start` fails, and `run` (berth-conmon's
    // create-and-start) fails after doing the create, so a created container is left to undo.
    ASSERT_TRUE(WriteFileAtomic(bin_ + "/unstartable-runtime", R"(#!/bin/sh
for a in "$@"; do
  if [ "$a" = start ]; then echo "injected start failure" >&2; exit 1; fi
done
for a in "$@"; do
  if [ "$a" = run ]; then
    for b in "$@"; do
      shift
      case "$b" in run) set -- "$@" create ;; --detach|-d) ;; *) set -- "$@" "$b" ;; esac
    done
    /usr/sbin/runc "$@" || exit 1
    echo "injected start failure" >&2
    exit 1
  fi
done
exec /usr/sbin/runc "$@"
)", 0755).ok());
    SandboxTest::SetUp();
  }
  void TearDown() override {
    SandboxTest::TearDown();
    if (!bin_.empty()) std::filesystem::remove_all(bin_);
  }
  BerthDaemon::Options DaemonOptions() override {
    return {.cni_bin_dirs = {bin_, "/usr/lib/cni"},
            .extra_runtimes = absl::StrCat("  broken: {path: ", bin_, "/broken-runtime, root: ",
                                           bin_, "/runc-state}\n", "  unstartable: {path: ", bin_,
                                           "/unstartable-runtime, root: ", bin_,
                                           "/runc-state-2}\n")};
  }
  std::string ExtraPlugins() override { return failing_plugin_ ? R"(, {"type": "failer"})" : ""; }

  std::string bin_;
  bool failing_plugin_ = false;
};

class FailingPluginTest : public FailureTest {
 protected:
  void SetUp() override {
    failing_plugin_ = true;
    FailureTest::SetUp();
  }
};

TEST_F(FailingPluginTest, PluginErrorIsReportedAndNothingIsLeft) {
  absl::StatusOr<std::string> r = Run(Request("victim"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("injected failure"));
  EXPECT_EQ(cri().Call(&RuntimeService::Stub::ListPodSandbox,
                       runtime::v1::ListPodSandboxRequest())->items_size(), 0);
  ExpectNoLeaks();
  // The name is free again.
  EXPECT_EQ(Run(Request("victim")).status().code(), absl::StatusCode::kInternal);
  // Counted by plugin, for the operator: two ADDs failed in "failer"; no other plugin failed.
  absl::StatusOr<HttpResponse> metrics = HttpGet(daemon_->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(metrics->body,
              HasSubstr(R"(berth_cni_errors_total{operation="ADD",plugin="failer"} 2)"));
  EXPECT_THAT(metrics->body, Not(HasSubstr(R"(plugin="bridge")")));
}

TEST_F(FailureTest, RuntimeErrorIsReportedAndNothingIsLeft) {
  runtime::v1::RunPodSandboxRequest request = Request("victim");
  request.set_runtime_handler("broken");
  absl::StatusOr<std::string> r = Run(request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("injected runtime failure"));
  ExpectNoLeaks();
  // And the same pod runs with a working runtime: the failure left nothing in its way.
  request.set_runtime_handler("");
  absl::StatusOr<std::string> id = Run(request);
  ASSERT_TRUE(id.ok()) << id.status();
  absl::StatusOr<HttpResponse> metrics = HttpGet(daemon_->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_THAT(metrics->body,
              HasSubstr(R"(berth_cni_operation_duration_seconds_count{operation="ADD"} 2)"));
  // Where the time of the pod start that worked went, step by step.
  // (No pause_start: berth-conmon has the runtime start the pause as it makes it.)
  for (const char* step : {"validate", "netns", "cni_add", "pause_create", "persist"}) {
    EXPECT_THAT(metrics->body,
                HasSubstr(absl::StrCat(R"(berth_operation_step_duration_seconds_count{operation=)"
                                       R"("RunPodSandbox",step=")",
                                       step, R"("} )")))
        << step;
  }
  ASSERT_TRUE(Remove(*id).ok());
  ExpectNoLeaks();
}

// The pause container is created (its monitor runs) but does not start: the container, the
// monitor's files and the network all go.
TEST_F(FailureTest, PauseThatDoesNotStartLeavesNothing) {
  runtime::v1::RunPodSandboxRequest request = Request("victim");
  request.set_runtime_handler("unstartable");
  absl::StatusOr<std::string> r = Run(request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("injected start failure"));
  ExpectNoLeaks({.runtime_roots = {bin_ + "/runc-state-2"}});
}

TEST_F(FailureTest, BrokenNetworkConfigIsFailedPrecondition) {
  std::filesystem::remove(daemon_->cni_dir() + "/10-e2e.conflist");
  ASSERT_TRUE(WriteFileAtomic(daemon_->cni_dir() + "/10-bad.conflist", "{\"cniVersion\":").ok());
  absl::StatusOr<std::string> r = Run(Request("nonet"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("10-bad.conflist"));
  ExpectNoLeaks();
}

TEST_F(SandboxTest, RunStatusListStopRemove) {
  absl::StatusOr<std::string> id = Run(Request("web"));
  ASSERT_TRUE(id.ok()) << id.status() << daemon_->Log();
  absl::StatusOr<runtime::v1::PodSandboxStatusResponse> status = Status(*id, true);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->status().state(), runtime::v1::SANDBOX_READY);
  EXPECT_THAT(status->status().network().ip(), StartsWith("10.251.3."));
  EXPECT_EQ(status->status().metadata().name(), "web");
  EXPECT_EQ(status->status().labels().at("app"), "web");
  EXPECT_EQ(status->status().runtime_handler(), "runc");
  nlohmann::json info = nlohmann::json::parse(status->info().at("info"));
  const int pid = info["pid"];
  EXPECT_GT(pid, 0);
  EXPECT_EQ(info["runtimeSpec"]["hostname"], "web");
  // The pause process is in the pod's network namespace.
  struct stat ns_of_pause, pinned;
  ASSERT_EQ(::stat(absl::StrCat("/proc/", pid, "/ns/net").c_str(), &ns_of_pause), 0);
  ASSERT_EQ(::stat(info["netns"].get<std::string>().c_str(), &pinned), 0);
  EXPECT_EQ(ns_of_pause.st_ino, pinned.st_ino);
  struct stat host_ns;
  ASSERT_EQ(::stat("/proc/self/ns/net", &host_ns), 0);
  EXPECT_NE(ns_of_pause.st_ino, host_ns.st_ino);
  const std::string pod_dir = daemon_->run_root() + "/pods/" + *id;
  EXPECT_EQ(ReadFile(pod_dir + "/resolv.conf").value(),
            "search e2e.svc.cluster.local\nnameserver 10.96.0.10\n");
  EXPECT_THAT(ReadFile(pod_dir + "/hosts").value(),
              HasSubstr(status->status().network().ip() + "\tweb\n"));

  // A second sandbox with the same metadata names the holder.
  absl::StatusOr<std::string> again = Run(Request("web"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr(*id));

  runtime::v1::ListPodSandboxRequest by_label;
  (*by_label.mutable_filter()->mutable_label_selector())["app"] = "web";
  EXPECT_EQ(cri().Call(&RuntimeService::Stub::ListPodSandbox, by_label)->items_size(), 1);
  runtime::v1::ListPodSandboxRequest by_prefix;
  by_prefix.mutable_filter()->set_id(id->substr(0, 12));
  EXPECT_EQ(cri().Call(&RuntimeService::Stub::ListPodSandbox, by_prefix)->items_size(), 1);

  ASSERT_TRUE(Stop(*id).ok());
  EXPECT_EQ(Status(*id)->status().state(), runtime::v1::SANDBOX_NOTREADY);
  EXPECT_EQ(IpReservations(), 0u);  // the IP is free for the next pod
  EXPECT_TRUE(Stop(*id).ok());       // idempotent
  runtime::v1::ListPodSandboxRequest ready;
  ready.mutable_filter()->mutable_state()->set_state(runtime::v1::SANDBOX_READY);
  EXPECT_EQ(cri().Call(&RuntimeService::Stub::ListPodSandbox, ready)->items_size(), 0);

  ASSERT_TRUE(Remove(*id).ok());
  EXPECT_EQ(Status(*id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Remove(*id).ok());
  EXPECT_TRUE(Stop("unknown").ok());
  ExpectNoLeaks();
}

// A pod whose network namespace pin was unmounted under berthd (by hand, or by a tool sweeping
// nsfs mounts) still stops, with its address released, and is removed, as kubelet asks: the
// bridge plugin's DEL fails on a path that is no longer a namespace, and kubelet would retry
// StopPodSandbox for ever.
TEST_F(SandboxTest, APodWhosePinWasUnmountedStillStopsAndIsRemoved) {
  absl::StatusOr<std::string> id = Run(Request("unpinned"));
  ASSERT_TRUE(id.ok()) << id.status() << daemon_->Log();
  absl::StatusOr<runtime::v1::PodSandboxStatusResponse> status = Status(*id, true);
  ASSERT_TRUE(status.ok()) << status.status();
  const std::string netns =
      nlohmann::json::parse(status->info().at("info"))["netns"].get<std::string>();
  ASSERT_EQ(::umount2(netns.c_str(), MNT_DETACH), 0);
  EXPECT_EQ(IpReservations(), 1u);
  absl::Status stopped = Stop(*id);
  EXPECT_TRUE(stopped.ok()) << stopped << daemon_->Log();
  EXPECT_EQ(Status(*id)->status().state(), runtime::v1::SANDBOX_NOTREADY);
  EXPECT_EQ(IpReservations(), 0u);
  absl::Status removed = Remove(*id);
  EXPECT_TRUE(removed.ok()) << removed;
  ExpectNoLeaks();
}

// berth_pod_monitors counts the pause containers' monitors: alive, then gone once killed (the
// pause's exit would go unrecorded). Such a pod still stops and is removed, leaving nothing.
TEST_F(SandboxTest, PauseMonitorsAreCounted) {
  absl::StatusOr<std::string> id = Run(Request("watched"));
  ASSERT_TRUE(id.ok()) << id.status() << daemon_->Log();
  auto metrics = [&] {
    absl::StatusOr<HttpResponse> m = HttpGet(daemon_->metrics_address(), "/metrics");
    return m.ok() ? m->body : std::string(m.status().message());
  };
  EXPECT_THAT(metrics(), HasSubstr(R"(berth_pod_monitors{state="alive"} 1)"));
  EXPECT_THAT(metrics(), HasSubstr(R"(berth_pod_monitors{state="gone"} 0)"));
  absl::StatusOr<std::string> pid =
      ReadFile(daemon_->root() + "/sandboxes/" + *id + "/conmon-pidfile");
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(::kill(std::stoi(*pid), SIGKILL), 0);
  EXPECT_TRUE(Eventually(
      [&] { return absl::StrContains(metrics(), R"(berth_pod_monitors{state="gone"} 1)"); }))
      << metrics();
  EXPECT_THAT(metrics(), HasSubstr(R"(berth_pod_monitors{state="alive"} 0)"));
  ASSERT_TRUE(Stop(*id).ok());
  ASSERT_TRUE(Remove(*id).ok());
  EXPECT_THAT(metrics(), HasSubstr(R"(berth_pod_monitors{state="gone"} 0)"));
  ExpectNoLeaks();
}

TEST_F(SandboxTest, HostNetworkSharesTheHostNamespace) {
  runtime::v1::RunPodSandboxRequest request = Request("hostnet");
  request.mutable_config()->mutable_linux()->mutable_security_context()
      ->mutable_namespace_options()->set_network(runtime::v1::NODE);
  absl::StatusOr<std::string> id = Run(request);
  ASSERT_TRUE(id.ok()) << id.status();
  nlohmann::json info = nlohmann::json::parse(Status(*id, true)->info().at("info"));
  const int pid = info["pid"];
  struct stat pause_ns, host_ns;
  ASSERT_EQ(::stat(absl::StrCat("/proc/", pid, "/ns/net").c_str(), &pause_ns), 0);
  ASSERT_EQ(::stat("/proc/self/ns/net", &host_ns), 0);
  EXPECT_EQ(pause_ns.st_ino, host_ns.st_ino);
  EXPECT_EQ(IpReservations(), 0u);
  ASSERT_TRUE(Remove(*id).ok());
  ExpectNoLeaks();
}

TEST_F(SandboxTest, CgroupParentIsHonoured) {
  runtime::v1::RunPodSandboxRequest request = Request("cg");
  request.mutable_config()->mutable_linux()->set_cgroup_parent("/berth-e2e-parent");
  absl::StatusOr<std::string> id = Run(request);
  ASSERT_TRUE(id.ok()) << id.status();
  nlohmann::json info = nlohmann::json::parse(Status(*id, true)->info().at("info"));
  EXPECT_EQ(info["runtimeSpec"]["linux"]["cgroupsPath"], "/berth-e2e-parent/" + *id);
  absl::StatusOr<std::string> cgroups =
      ReadFile(absl::StrCat("/proc/", info["pid"].get<int>(), "/cgroup"));
  ASSERT_TRUE(cgroups.ok());
  EXPECT_THAT(*cgroups, HasSubstr("/berth-e2e-parent/" + *id));
  ASSERT_TRUE(Remove(*id).ok());
  ExpectNoLeaks();
  // The parent is the caller's (kubelet's) to manage; this test made it, so it removes it.
  for (const auto& controller : std::filesystem::directory_iterator("/sys/fs/cgroup")) {
    std::error_code ec;
    std::filesystem::remove(controller.path() / "berth-e2e-parent", ec);
  }
}

TEST_F(SandboxTest, SurvivesBerthdBeingKilled) {
  absl::StatusOr<std::string> id = Run(Request("durable"));
  ASSERT_TRUE(id.ok()) << id.status();
  // The monitor must hold none of berthd's descriptors (its sockets would outlive berthd).
  auto descriptors = [](const std::string& pid) {
    std::set<std::string> targets;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/" + pid + "/fd")) {
      targets.insert(std::filesystem::read_symlink(fd.path()).string());
    }
    return targets;
  };
  absl::StatusOr<CommandResult> monitor = RunCommand({"/usr/bin/pgrep", "-f", "conmon.*" + *id});
  ASSERT_TRUE(monitor.ok());
  const std::set<std::string> berthd_fds = descriptors(std::to_string(daemon_->pid()));
  for (const std::string& target :
       descriptors(monitor->output.substr(0, monitor->output.find('\n')))) {
    if (target.rfind("socket:", 0) == 0) {
      EXPECT_FALSE(berthd_fds.contains(target)) << "conmon holds berthd's " << target;
    }
  }
  daemon_->Kill();
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  absl::StatusOr<runtime::v1::PodSandboxStatusResponse> status = Status(*id);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->status().state(), runtime::v1::SANDBOX_READY);
  ASSERT_TRUE(Remove(*id).ok());
  ExpectNoLeaks();
}

// A berthd killed in the middle of a CNI cache write leaves the write's temporary file beside the
// entry: the next start removes it.
TEST_F(SandboxTest, InterruptedCacheWriteIsSweptAtStart) {
  absl::StatusOr<std::string> id = Run(Request("cached"));
  ASSERT_TRUE(id.ok()) << id.status();
  daemon_->Kill();
  // pid_max is at most 2^22: no berthd has this pid.
  const std::string tmp =
      absl::StrCat(daemon_->root(), "/cni-cache/", *id, "-eth0.json.tmp.4194304");
  ASSERT_TRUE(WriteFileAtomic(tmp, "{\"cniVersion\":").ok());
  ASSERT_TRUE(daemon_->Start().ok()) << daemon_->Log();
  EXPECT_FALSE(std::filesystem::exists(tmp));
  ASSERT_TRUE(Remove(*id).ok());
  ExpectNoLeaks();
}

TEST_F(SandboxTest, BadRequestsLeaveNothing) {
  runtime::v1::RunPodSandboxRequest unknown_handler = Request("h");
  unknown_handler.set_runtime_handler("kata");
  absl::StatusOr<std::string> r = Run(unknown_handler);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"kata\""));
  runtime::v1::RunPodSandboxRequest no_name = Request("");
  EXPECT_EQ(Run(no_name).status().code(), absl::StatusCode::kInvalidArgument);
  runtime::v1::RunPodSandboxRequest bad_sysctl = Request("s");
  (*bad_sysctl.mutable_config()->mutable_linux()->mutable_sysctls())["kernel.hostname"] = "x";
  r = Run(bad_sysctl);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  runtime::v1::RunPodSandboxRequest bad_dns = Request("d");
  bad_dns.mutable_config()->mutable_dns_config()->add_servers("not-an-ip");
  EXPECT_EQ(Run(bad_dns).status().code(), absl::StatusCode::kInvalidArgument);
  // A user namespace berth cannot give must not turn into a pod in the host's user namespace.
  runtime::v1::RunPodSandboxRequest userns = Request("u");
  runtime::v1::UserNamespace* u = userns.mutable_config()->mutable_linux()
      ->mutable_security_context()->mutable_namespace_options()->mutable_userns_options();
  u->set_mode(runtime::v1::POD);
  runtime::v1::IDMapping* m = u->add_uids();
  m->set_host_id(65536);
  m->set_length(65536);
  *u->add_gids() = *m;
  r = Run(userns);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("userns_options"));
  EXPECT_EQ(cri().Call(&RuntimeService::Stub::ListPodSandbox,
                       runtime::v1::ListPodSandboxRequest())->items_size(), 0);
  ExpectNoLeaks();
}

}  // namespace
}  // namespace berth::testing
