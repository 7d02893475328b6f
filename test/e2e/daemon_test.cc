// berthd as a process: the CRI server, configuration, metrics, socket handling and signals.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/file_util.h"
#include "base/process.h"
#include "base/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "test/lib/berth_daemon.h"
#include "test/lib/http.h"
#include "test/lib/process.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::Not;

constexpr char kConflist[] = R"({
  "cniVersion": "1.0.0", "name": "e2e-net",
  "plugins": [
    {"type": "bridge", "bridge": "berthe2e0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.251.0.0/24"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}]})";

std::unique_ptr<BerthDaemon> Started(BerthDaemon::Options options = {}) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create(std::move(options));
  EXPECT_TRUE(daemon.ok()) << daemon.status();
  if (!daemon.ok()) return nullptr;
  absl::Status started = (*daemon)->Start();
  EXPECT_TRUE(started.ok()) << started;
  return started.ok() ? *std::move(daemon) : nullptr;
}

const runtime::v1::RuntimeCondition* Condition(const runtime::v1::StatusResponse& status,
                                               const std::string& type) {
  for (const auto& c : status.status().conditions()) {
    if (c.type() == type) return &c;
  }
  return nullptr;
}

TEST(DaemonTest, Version) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  absl::StatusOr<runtime::v1::VersionResponse> v = daemon->client().Version();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->runtime_name(), "berth");
  EXPECT_EQ(v->runtime_api_version(), "v1");
  EXPECT_FALSE(v->runtime_version().empty());
}

TEST(DaemonTest, StatusWithoutCniConfigIsNotNetworkReady) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  absl::StatusOr<runtime::v1::StatusResponse> s = daemon->client().Status(/*verbose=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_NE(Condition(*s, "RuntimeReady"), nullptr);
  EXPECT_TRUE(Condition(*s, "RuntimeReady")->status());
  const auto* network = Condition(*s, "NetworkReady");
  ASSERT_NE(network, nullptr);
  EXPECT_FALSE(network->status());
  EXPECT_EQ(network->reason(), "NetworkPluginNotReady");
  EXPECT_FALSE(network->message().empty());
  ASSERT_TRUE(s->info().contains("config"));
  nlohmann::json config = nlohmann::json::parse(s->info().at("config"));
  EXPECT_EQ(config["listen"], daemon->socket_path());
  EXPECT_EQ(config["root"], daemon->root());
  // What crictl info shows an operator besides: the handlers and what they support, the cgroups
  // and the storage.
  ASSERT_TRUE(s->info().contains("runtimeHandlers"));
  nlohmann::json handlers = nlohmann::json::parse(s->info().at("runtimeHandlers"));
  ASSERT_TRUE(handlers.is_array());
  bool runc_is_default = false;
  for (const auto& h : handlers) {
    EXPECT_TRUE(h["features"].contains("recursiveReadOnlyMounts")) << h.dump();
    if (h["name"] == "runc") runc_is_default = h["default"] && h["path"] == "/usr/sbin/runc";
  }
  EXPECT_TRUE(runc_is_default) << handlers.dump();
  ASSERT_TRUE(s->info().contains("cgroup"));
  nlohmann::json cgroup = nlohmann::json::parse(s->info().at("cgroup"));
  EXPECT_EQ(cgroup["driver"], "cgroupfs");
  EXPECT_THAT(cgroup["version"].get<std::string>(), StartsWith("v"));
  EXPECT_FALSE(cgroup["controllers"].empty()) << cgroup.dump();
  ASSERT_TRUE(s->info().contains("storage"));
  nlohmann::json storage = nlohmann::json::parse(s->info().at("storage"));
  EXPECT_EQ(storage["driver"], "overlay");
  EXPECT_EQ(storage["layers"], daemon->root() + "/layers");
}

TEST(DaemonTest, StatusFollowsTheCniConfDir) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  ASSERT_TRUE(WriteFileAtomic(daemon->cni_dir() + "/10-broken.conflist", "{not json").ok());
  absl::StatusOr<runtime::v1::StatusResponse> s = daemon->client().Status();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(Condition(*s, "NetworkReady")->status());
  EXPECT_THAT(Condition(*s, "NetworkReady")->message(), HasSubstr("10-broken.conflist"));

  ASSERT_TRUE(WriteFileAtomic(daemon->cni_dir() + "/20-e2e.conflist", kConflist).ok());
  s = daemon->client().Status();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(Condition(*s, "NetworkReady")->status()) << Condition(*s, "NetworkReady")->message();
}

// kubelet and critest read these to decide what they may ask for.
TEST(DaemonTest, StatusReportsHandlerFeaturesAsTheRuntimesDo) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  absl::StatusOr<runtime::v1::StatusResponse> s = daemon->client().Status();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->features().supplemental_groups_policy());
  std::map<std::string, runtime::v1::RuntimeHandlerFeatures> handlers;
  for (const auto& h : s->runtime_handlers()) handlers[h.name()] = h.features();
  ASSERT_TRUE(handlers.contains("")) << "the default handler";
  ASSERT_TRUE(handlers.contains("runc"));
  ASSERT_TRUE(handlers.contains("crun"));
  // runc says itself whether it has "rro"; berth passes that on (this host's kernel has
  // mount_setattr). Nobody gets user namespaces: berth does not run pods in them.
  absl::StatusOr<CommandResult> features = RunCommand({"/usr/sbin/runc", "features"});
  const bool runc_rro = features.ok() && features->exit_code == 0 &&
                        features->output.find("\"rro\"") != std::string::npos;
  EXPECT_EQ(handlers["runc"].recursive_read_only_mounts(), runc_rro);
  EXPECT_EQ(handlers[""].recursive_read_only_mounts(), runc_rro) << "the default is runc";
  for (const auto& [name, f] : handlers) EXPECT_FALSE(f.user_namespaces()) << name;
  // Asked again (kubelet does so every few seconds): the same answer, from memory.
  absl::StatusOr<runtime::v1::StatusResponse> again = daemon->client().Status();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->runtime_handlers_size(), s->runtime_handlers_size());
}

TEST(DaemonTest, RuntimeConfigReportsTheCgroupDriver) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  absl::StatusOr<runtime::v1::RuntimeConfigResponse> c = daemon->client().RuntimeConfig();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->linux().cgroup_driver(), runtime::v1::CgroupDriver::CGROUPFS);

  auto systemd = Started({.extra_yaml = "cgroup_manager: systemd\n"});
  ASSERT_NE(systemd, nullptr);
  c = systemd->client().RuntimeConfig();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->linux().cgroup_driver(), runtime::v1::CgroupDriver::SYSTEMD);
}

// kubelet sends the node's pod CIDR at start (and when the Node gets one): accepted and shown, as
// cri-o does; a malformed one is refused.
TEST(DaemonTest, UpdateRuntimeConfigTakesThePodCidr) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  auto update = [&](const std::string& cidr) {
    runtime::v1::UpdateRuntimeConfigRequest r;
    r.mutable_runtime_config()->mutable_network_config()->set_pod_cidr(cidr);
    return daemon->client().Call(&runtime::v1::RuntimeService::Stub::UpdateRuntimeConfig, r)
        .status();
  };
  auto shown = [&]() -> std::string {
    runtime::v1::StatusRequest r;
    r.set_verbose(true);
    absl::StatusOr<runtime::v1::StatusResponse> s =
        daemon->client().Call(&runtime::v1::RuntimeService::Stub::Status, r);
    if (!s.ok() || !s->info().contains("podCIDR")) return "<none>";
    return s->info().at("podCIDR");
  };
  EXPECT_EQ(shown(), "\"\"");
  EXPECT_TRUE(update("10.88.0.0/16,fd00:10:88::/64").ok());
  EXPECT_EQ(shown(), "\"10.88.0.0/16,fd00:10:88::/64\"");
  for (const char* bad : {"10.88.0.0", "10.88.0.0/33", "fd00::/129", "pods/24", "10.88.0.0/x"}) {
    absl::Status refused = update(bad);
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << refused;
  }
  EXPECT_EQ(shown(), "\"10.88.0.0/16,fd00:10:88::/64\"");  // unchanged
}

TEST(DaemonTest, UnimplementedRpcNamesItself) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  absl::StatusOr<runtime::v1::CheckpointContainerResponse> r = daemon->client().Call(
      &runtime::v1::RuntimeService::Stub::CheckpointContainer,
      runtime::v1::CheckpointContainerRequest());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("CheckpointContainer"));
}

TEST(DaemonTest, MetricsCountTheCalls) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  // Start() probed with Version calls of its own: count from a fresh baseline.
  absl::StatusOr<HttpResponse> before = HttpGet(daemon->metrics_address(), "/metrics");
  ASSERT_TRUE(before.ok()) << before.status();
  auto count = [](const std::string& body, const std::string& series) -> int {
    size_t at = body.find(series + " ");
    return at == std::string::npos ? 0 : std::stoi(body.substr(at + series.size() + 1));
  };
  const std::string version = R"(berth_operations_total{operation="Version"})";
  const int base = count(before->body, version);
  ASSERT_TRUE(daemon->client().Version().ok());
  ASSERT_TRUE(daemon->client().Version().ok());
  (void)daemon->client().Call(&runtime::v1::RuntimeService::Stub::CheckpointContainer,
                              runtime::v1::CheckpointContainerRequest());
  absl::StatusOr<HttpResponse> after = HttpGet(daemon->metrics_address(), "/metrics");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->status, 200);
  EXPECT_EQ(count(after->body, version), base + 2) << after->body;
  EXPECT_EQ(count(after->body, R"(berth_operations_errors_total{code="UNIMPLEMENTED",operation="CheckpointContainer"})"),
            1)
      << after->body;
  EXPECT_THAT(after->body,
              HasSubstr(R"(berth_operations_latency_seconds_bucket{operation="Version",le="0.001"})"));
  // None under way any more; the calls in flight are counted while they run.
  EXPECT_THAT(after->body, HasSubstr(R"(berth_operations_in_flight{operation="Version"} 0)"));
  EXPECT_THAT(after->body,
              HasSubstr(R"(berth_operations_in_flight{operation="CheckpointContainer"} 0)"));
}

// The value of the sample `series` (name and labels exactly as served), or nullopt.
std::optional<double> Sample(const std::string& body, const std::string& series) {
  const size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(body.substr(at + series.size() + 2));
}

// What an operator alerts on is there from the start, and all of it passes Prometheus's own
// linter (Debian's promtool, installed by contrib/install-deps.sh).
TEST(DaemonTest, OperatorMetricsAreServedAndPassPromtool) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  absl::StatusOr<HttpResponse> metrics = HttpGet(daemon->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string& body = metrics->body;
  // The process, as every Prometheus client library exports it.
  EXPECT_GT(Sample(body, "process_resident_memory_bytes").value_or(0), 1 << 20) << body;
  EXPECT_GT(Sample(body, "process_virtual_memory_bytes").value_or(0), 1 << 20);
  EXPECT_GT(Sample(body, "process_open_fds").value_or(0), 3);
  EXPECT_GT(Sample(body, "process_max_fds").value_or(0), 0);
  EXPECT_TRUE(Sample(body, "process_cpu_seconds_total").has_value());
  const double now = static_cast<double>(::time(nullptr));
  EXPECT_NEAR(Sample(body, "process_start_time_seconds").value_or(0), now, 120);
  // What the node runs, and what the start-up found: nothing yet.
  EXPECT_EQ(Sample(body, R"(berth_pods{state="ready"})"), 0.0);
  EXPECT_EQ(Sample(body, R"(berth_containers{state="running"})"), 0.0);
  EXPECT_EQ(Sample(body, R"(berth_container_exits_total{reason="OOMKilled"})"), 0.0);
  EXPECT_EQ(Sample(body, R"(berth_recovery_objects{what="containers_loaded"})"), 0.0);
  EXPECT_EQ(Sample(body, R"(berth_recovery_objects{what="orphan_mounts_removed"})"), 0.0);
  EXPECT_TRUE(
      Sample(body, R"(berth_db_transaction_duration_seconds_count{result="commit"})").has_value());

  absl::StatusOr<ProcessResult> lint = RunProcess(
      {.argv = {"/usr/bin/promtool", "check", "metrics"}, .stdin_data = body});
  ASSERT_TRUE(lint.ok()) << lint.status();
  EXPECT_EQ(lint->exit_code, 0) << lint->stdout_data << lint->stderr_data;
  EXPECT_EQ(lint->stdout_data + lint->stderr_data, "") << "promtool's findings";
}

// Every line of a CRI call names its request, and the pod or container once known; with
// log_format json every line is one JSON object.
TEST(DaemonTest, LogLinesCarryTheRequestAndTheIdsAndCanBeJson) {
  auto daemon = Started({.extra_yaml = "log_format: json\n"});
  ASSERT_NE(daemon, nullptr);
  runtime::v1::ContainerStatusRequest status;
  status.set_container_id("deadbeef");
  EXPECT_FALSE(daemon->client().Call(&runtime::v1::RuntimeService::Stub::ContainerStatus, status).ok());
  runtime::v1::StopPodSandboxRequest stop;  // a long call: served on the pool
  stop.set_pod_sandbox_id("0123456789abcdef0123");
  EXPECT_TRUE(daemon->client().Call(&runtime::v1::RuntimeService::Stub::StopPodSandbox, stop).ok());
  std::map<std::string, nlohmann::json> by_operation;
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(daemon->Log(), '\n', absl::SkipEmpty())) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not JSON: " << line;
    ASSERT_TRUE(j.contains("time") && j.contains("level") && j.contains("msg")) << line;
    ++lines;
    const std::string msg = j["msg"];
    for (const char* op : {"ContainerStatus failed", "StopPodSandbox OK"}) {
      if (absl::StartsWith(msg, op)) by_operation[op] = j;
    }
  }
  EXPECT_GT(lines, 3);
  ASSERT_TRUE(by_operation.count("ContainerStatus failed")) << daemon->Log();
  const nlohmann::json& failed = by_operation["ContainerStatus failed"];
  EXPECT_EQ(failed["level"], "warning");
  EXPECT_EQ(failed["container"], "deadbeef");
  EXPECT_EQ(failed.value("request", "").size(), 8u) << failed.dump();
  ASSERT_TRUE(by_operation.count("StopPodSandbox OK")) << daemon->Log();
  EXPECT_EQ(by_operation["StopPodSandbox OK"]["pod"], "0123456789abc");
  EXPECT_NE(by_operation["StopPodSandbox OK"]["request"], failed["request"]);
}

TEST(DaemonTest, LongCallsAreMeasuredAndLoggedLikeTheOthers) {
  // Long calls are served by callback handlers on berthd's work pool, not on gRPC's synchronous
  // threads: the instrumentation must see them all the same.
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  runtime::v1::StopContainerRequest stop;
  stop.set_container_id("0123456789ab");
  EXPECT_TRUE(daemon->client().Call(&runtime::v1::RuntimeService::Stub::StopContainer, stop).ok());
  absl::StatusOr<std::string> pulled = daemon->client().PullImage("");
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<HttpResponse> metrics = HttpGet(daemon->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(metrics->body, HasSubstr(R"(berth_operations_total{operation="StopContainer"} 1)"));
  EXPECT_THAT(
      metrics->body,
      HasSubstr(
          R"(berth_operations_errors_total{code="INVALID_ARGUMENT",operation="PullImage"} 1)"));
  EXPECT_THAT(daemon->Log(), HasSubstr("PullImage failed"));
}

TEST(DaemonTest, EventStreamsHoldNoRequestThread) {
  // More GetContainerEvents streams than gRPC has synchronous threads (64): the lists and
  // statuses kubelet sends every second must still be answered.
  constexpr int kStreams = 100;
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<runtime::v1::ContainerEventResponse>>> streams;
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    streams.push_back(daemon->client().runtime().GetContainerEvents(
        contexts.back().get(), runtime::v1::GetEventsRequest()));
    // The headers come once berthd has subscribed the stream.
    streams.back()->WaitForInitialMetadata();
  }
  EXPECT_TRUE(daemon->client().Version().ok());
  absl::StatusOr<runtime::v1::ListContainersResponse> listed = daemon->client().Call(
      &runtime::v1::RuntimeService::Stub::ListContainers, runtime::v1::ListContainersRequest());
  EXPECT_TRUE(listed.ok()) << listed.status();
  for (int i = 0; i < kStreams; ++i) {
    contexts[i]->TryCancel();
    EXPECT_EQ(streams[i]->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
}

TEST(DaemonTest, SigtermEndsEventStreams) {
  // An open stream would otherwise hold the shutdown for its whole grace period, and its
  // client would see the call cut off rather than ended.
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  std::unique_ptr<grpc::ClientReader<runtime::v1::ContainerEventResponse>> stream =
      daemon->client().runtime().GetContainerEvents(&context, runtime::v1::GetEventsRequest());
  stream->WaitForInitialMetadata();
  // As kubelet does: reading all along.
  grpc::Status finished;
  std::thread reader([&] {
    runtime::v1::ContainerEventResponse event;
    while (stream->Read(&event)) {
    }
    finished = stream->Finish();
  });
  absl::StatusOr<int> code = daemon->Stop(SIGTERM);
  reader.join();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << daemon->Log();
  EXPECT_TRUE(finished.ok()) << finished.error_code() << ": " << finished.error_message();
}

TEST(DaemonTest, SecondDaemonOnTheSameSocketIsRefused) {
  auto first = Started();
  ASSERT_NE(first, nullptr);
  absl::StatusOr<CommandResult> second =
      RunCommand({first->binary(), "--config", first->config_path()});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->exit_code, 0);
  EXPECT_THAT(second->output, HasSubstr("already serving"));
  EXPECT_TRUE(first->client().Version().ok());
}

TEST(DaemonTest, StaleSocketIsReplaced) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ASSERT_TRUE(MakeDirs((*daemon)->run_root()).ok());
  // A socket file whose listener is gone, as a killed daemon leaves it.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", (*daemon)->socket_path().c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
  ASSERT_TRUE((*daemon)->Start().ok()) << (*daemon)->Log();
  EXPECT_TRUE((*daemon)->client().Version().ok());
}

TEST(DaemonTest, SocketIsGroupOnly) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  struct stat st;
  ASSERT_EQ(::stat(daemon->socket_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST(DaemonTest, ContainerContentsAreRootsAlone) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  // As an older berth left it: world-readable.
  ASSERT_TRUE(MakeDirs((*daemon)->root() + "/containers", 0755).ok());
  ASSERT_EQ(::chmod(((*daemon)->root() + "/containers").c_str(), 0755), 0);
  ASSERT_TRUE((*daemon)->Start().ok()) << (*daemon)->Log();
  for (const std::string& dir :
       {(*daemon)->root() + "/containers", (*daemon)->root() + "/sandboxes",
        (*daemon)->root() + "/logs", (*daemon)->run_root() + "/pods"}) {
    struct stat st;
    ASSERT_EQ(::stat(dir.c_str(), &st), 0) << dir;
    EXPECT_EQ(st.st_mode & 0777, 0700u) << dir;
  }
}

TEST(DaemonTest, SigtermExitsCleanly) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  absl::StatusOr<int> code = daemon->Stop(SIGTERM);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << daemon->Log();
  EXPECT_FALSE(std::filesystem::exists(daemon->socket_path()));
  EXPECT_THAT(daemon->Log(), HasSubstr("berthd stopped"));
}

TEST(DaemonTest, SighupReloadsTheLogLevelAndKeepsServing) {
  auto daemon = Started();
  ASSERT_NE(daemon, nullptr);
  ASSERT_TRUE(WriteFileAtomic(daemon->config_path(),
                              ReadFile(daemon->config_path()).value() + "log_level: warn\n")
                  .ok());
  // The file now sets log_level twice: a broken config is refused and the daemon keeps going.
  ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
  EXPECT_TRUE(daemon->client().Version().ok());
  // Handled before the next one is sent: two pending SIGHUPs are one.
  for (int i = 0; i < 200 && daemon->Log().find("not reloaded") == std::string::npos; ++i) {
    usleep(10000);
  }
  std::string config = ReadFile(daemon->config_path()).value();
  config.replace(config.find("log_level: debug\n"), 17, "");
  ASSERT_TRUE(WriteFileAtomic(daemon->config_path(), config).ok());
  ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
  for (int i = 0; i < 200 && daemon->Log().find("reloaded (log level warn)") == std::string::npos;
       ++i) {
    usleep(10000);
  }
  EXPECT_THAT(daemon->Log(), HasSubstr("not reloaded"));
  EXPECT_THAT(daemon->Log(), HasSubstr("reloaded (log level warn)"));
  absl::StatusOr<runtime::v1::StatusResponse> s = daemon->client().Status(true);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(nlohmann::json::parse(s->info().at("config"))["log_level"], "warn");
}

// Plays systemd's part for a Type=notify service with a watchdog: a datagram socket named by
// NOTIFY_SOCKET, WATCHDOG_USEC for berthd's own pid.
class ServiceManager {
 public:
  explicit ServiceManager(const std::string& path)
      : fd_(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    bound_ = ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  bool bound() const { return bound_; }

  // The next notification other than WATCHDOG=1 (those are counted), or "" after `timeout`.
  std::string Next(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0))) <= 0) return "";
      char buf[4096];
      const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      if (n <= 0) return "";
      std::string message(buf, static_cast<size_t>(n));
      if (message == "WATCHDOG=1") {
        ++watchdogs_;
        continue;
      }
      return message;
    }
  }
  int watchdogs() const { return watchdogs_; }

 private:
  UniqueFd fd_;
  bool bound_ = false;
  int watchdogs_ = 0;
};

TEST(DaemonTest, TellsTheServiceManagerAsSystemdExpects) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ServiceManager systemd((*daemon)->dir() + "/notify");
  ASSERT_TRUE(systemd.bound());
  ASSERT_TRUE((*daemon)
                  ->Start({"NOTIFY_SOCKET=" + (*daemon)->dir() + "/notify",
                           "WATCHDOG_USEC=400000"})
                  .ok());
  EXPECT_THAT(systemd.Next(), StartsWith("READY=1\nSTATUS=serving the CRI on "));
  // The watchdog is fed every half of its timeout.
  usleep(700000);
  EXPECT_EQ(systemd.Next(std::chrono::milliseconds(0)), "");
  EXPECT_GE(systemd.watchdogs(), 2);
  ASSERT_EQ(::kill((*daemon)->pid(), SIGHUP), 0);
  EXPECT_THAT(systemd.Next(), StartsWith("RELOADING=1\nMONOTONIC_USEC="));
  EXPECT_EQ(systemd.Next(), "READY=1");
  absl::StatusOr<int> code = (*daemon)->Stop(SIGTERM);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(systemd.Next(), "STOPPING=1");
}

// A listening unix socket at `path`, as systemd makes for berthd.socket (mode 0660).
UniqueFd ListeningSocket(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (!fd.valid() || !MakeDirs(DirName(path)).ok() ||
      ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd.get(), 128) != 0 || ::chmod(path.c_str(), 0660) != 0) {
    ADD_FAILURE() << "listen on " << path << ": " << strerror(errno);
    return UniqueFd();
  }
  return fd;
}

ino_t Inode(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// A Version call started now, on a channel of its own that connects as kubelet's does, waiting
// up to 20 s for an answer.
std::future<absl::StatusOr<runtime::v1::VersionResponse>> VersionLater(const std::string& socket) {
  return std::async(std::launch::async, [socket] {
    return CriClient(socket, std::chrono::seconds(20), CriClient::Connect::kLikeKubelet).Version();
  });
}

// systemd's socket activation, the test playing systemd: it makes the socket, as berthd.socket
// would, and passes it. A client that connects before berthd runs, or while it restarts after
// a SIGKILL, waits on the socket's queue and is answered; the socket is never removed or
// replaced, and it stays for the next berthd after a clean stop.
TEST(DaemonTest, ServesTheSocketSystemdPassesAndKeepsItAcrossRestarts) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string path = (*daemon)->socket_path();
  UniqueFd listener = ListeningSocket(path);
  ASSERT_TRUE(listener.valid());
  const ino_t inode = Inode(path);

  auto early = VersionLater(path);
  EXPECT_EQ(early.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "answered with no berthd running";
  ASSERT_TRUE((*daemon)->StartActivated(listener.get()).ok()) << (*daemon)->Log();
  absl::StatusOr<runtime::v1::VersionResponse> answer = early.get();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->runtime_name(), "berth");
  EXPECT_THAT((*daemon)->Log(), HasSubstr("serving the CRI on " + path + " (the socket systemd passed)"));
  EXPECT_EQ(Inode(path), inode);

  (*daemon)->Kill();
  auto during_restart = VersionLater(path);
  EXPECT_EQ(during_restart.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  ASSERT_TRUE((*daemon)->StartActivated(listener.get()).ok()) << (*daemon)->Log();
  answer = during_restart.get();
  EXPECT_TRUE(answer.ok()) << answer.status();

  // A clean stop leaves the socket, and the connections queued on it, to systemd.
  absl::StatusOr<int> code = (*daemon)->Stop(SIGTERM);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  EXPECT_EQ(Inode(path), inode);
  auto after_stop = VersionLater(path);
  ASSERT_TRUE((*daemon)->StartActivated(listener.get()).ok()) << (*daemon)->Log();
  EXPECT_TRUE(after_stop.get().ok());
}

// A passed socket that fails (here shut down by the test, as a broken socket unit would leave it)
// ends berthd with an error, for systemd's Restart= to start one that can accept, instead of a
// berthd that runs on and answers nothing.
TEST(DaemonTest, AFailedPassedSocketEndsBerthdForARestart) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  UniqueFd listener = ListeningSocket((*daemon)->socket_path());
  ASSERT_TRUE(listener.valid());
  ASSERT_TRUE((*daemon)->StartActivated(listener.get()).ok()) << (*daemon)->Log();
  ASSERT_EQ(::shutdown(listener.get(), SHUT_RDWR), 0);
  absl::StatusOr<int> code = (*daemon)->AwaitExit(std::chrono::seconds(20));
  ASSERT_TRUE(code.ok()) << code.status() << (*daemon)->Log();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT((*daemon)->Log(),
              HasSubstr("shutting down so that the service manager restarts berthd"));
  EXPECT_THAT((*daemon)->Log(),
              HasSubstr("stopped: the CRI socket the service manager passed failed"));
}

// A passed socket that is not the configured one is refused with what to fix, and left alone.
TEST(DaemonTest, ASocketSystemdPassesForAnotherPathIsRefused) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string other = (*daemon)->dir() + "/other.sock";
  UniqueFd listener = ListeningSocket(other);
  ASSERT_TRUE(listener.valid());
  EXPECT_FALSE((*daemon)->StartActivated(listener.get()).ok());
  EXPECT_THAT((*daemon)->Log(),
              HasSubstr("the service manager passed a socket on " + other +
                        ", but berthd is configured to listen on " + (*daemon)->socket_path()));
  EXPECT_NE(Inode(other), 0u);
  EXPECT_EQ(::access((*daemon)->socket_path().c_str(), F_OK), -1);
}

// contrib's berthd.service and berthd.socket, with ExecStart naming the berthd under test: clean
// under `systemd-analyze verify` (which also checks that ExecStart runs), and the socket unit
// listens where berthd's default configuration does.
TEST(SystemdUnitTest, UnitsPassSystemdAnalyzeAndAgreeWithTheDefaults) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  absl::StatusOr<std::string> service = ReadFile(BERTH_SOURCE_DIR "/contrib/berthd.service");
  absl::StatusOr<std::string> socket = ReadFile(BERTH_SOURCE_DIR "/contrib/berthd.socket");
  ASSERT_TRUE(service.ok() && socket.ok());
  EXPECT_THAT(*service, HasSubstr("\nExecStart=/usr/local/bin/berthd\n"));
  EXPECT_THAT(*service, HasSubstr("\nType=notify\n"));
  const std::string units = (*daemon)->dir() + "/units";
  ASSERT_TRUE(MakeDirs(units).ok());
  ASSERT_TRUE(WriteFileAtomic(units + "/berthd.service",
                              absl::StrReplaceAll(*service, {{"/usr/local/bin/berthd", BerthdPath()}}))
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(units + "/berthd.socket", *socket).ok());
  absl::StatusOr<CommandResult> verify =
      RunCommand({"systemd-analyze", "verify", "--man=no", units + "/berthd.socket",
                  units + "/berthd.service"});
  ASSERT_TRUE(verify.ok()) << verify.status();
  EXPECT_EQ(verify->exit_code, 0) << verify->output;
  EXPECT_EQ(verify->output, "") << "systemd-analyze has something to say";

  absl::StatusOr<CommandResult> defaults =
      RunCommand({BerthdPath(), "--config", "/dev/null", "config"});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  std::string listen;
  for (absl::string_view line : absl::StrSplit(defaults->output, '\n')) {
    if (absl::ConsumePrefix(&line, "listen: ")) listen = std::string(line);
  }
  ASSERT_FALSE(listen.empty()) << defaults->output;
  EXPECT_THAT(*socket, HasSubstr("\nListenStream=" + listen + "\n"));
}

TEST(CommandLineTest, VersionAndConfig) {
  absl::StatusOr<CommandResult> version = RunCommand({BerthdPath(), "version"});
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->exit_code, 0);
  EXPECT_THAT(version->output, HasSubstr("berth version "));

  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok());
  absl::StatusOr<CommandResult> config =
      RunCommand({BerthdPath(), "--config", (*daemon)->config_path(), "config"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->exit_code, 0) << config->output;
  EXPECT_THAT(config->output, HasSubstr("listen: " + (*daemon)->socket_path()));
  EXPECT_THAT(config->output, HasSubstr("cgroup_manager: cgroupfs"));
}

// `berthd check` on this node with the test's configuration: the runtimes, helpers, overlayfs,
// cgroups and namespaces are there; the CNI directory is empty (a warning, not a failure).
TEST(CommandLineTest, CheckFindsThisNodeReady) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok());
  absl::StatusOr<CommandResult> check =
      RunCommand({BerthdPath(), "--config", (*daemon)->config_path(), "check"});
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->exit_code, 0) << check->output;
  for (const char* line : {"ok    runtime runc (default): runc version", "ok    overlayfs: ",
                           "ok    cgroups: ", "ok    namespaces: ", "ok    helper: ",
                           "warn  CNI: ", "this node can run berthd"}) {
    EXPECT_THAT(check->output, HasSubstr(line)) << check->output;
  }
  EXPECT_THAT(check->output, Not(HasSubstr("FAIL")));
  // The overlay it mounted to find out is gone, and its directory too.
  EXPECT_THAT(ReadFile("/proc/self/mountinfo").value_or(""), Not(HasSubstr("berth-check-overlay")));
}

// What is missing is said in plain words, and the exit code says the node is not ready.
TEST(CommandLineTest, CheckSaysWhatIsMissing) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create(
      {.extra_yaml = "default_runtime: gone\n",
       .extra_runtimes = "  gone: {path: /nonexistent/runc, root: /run/berth-gone}\n"});
  ASSERT_TRUE(daemon.ok());
  absl::StatusOr<CommandResult> check =
      RunCommand({BerthdPath(), "--config", (*daemon)->config_path(), "check"});
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->exit_code, 1) << check->output;
  EXPECT_THAT(check->output,
              HasSubstr("FAIL  runtime gone (default): /nonexistent/runc is not an executable "
                        "file: no pod can start"));
  EXPECT_THAT(check->output, HasSubstr("ok    runtime runc: "));
  EXPECT_THAT(check->output, HasSubstr("cannot run pods with berthd as configured"));
}

TEST(CommandLineTest, BrokenConfigNamesFileLineAndKey) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create();
  ASSERT_TRUE(daemon.ok());
  const std::string broken = (*daemon)->dir() + "/broken.yaml";
  ASSERT_TRUE(WriteFileAtomic(broken, "root: /tmp/x\nlog_level: info\nbogus_key: 1\n").ok());
  absl::StatusOr<CommandResult> run = RunCommand({BerthdPath(), "--config", broken});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_NE(run->exit_code, 0);
  EXPECT_THAT(run->output, HasSubstr("broken.yaml:3:"));
  EXPECT_THAT(run->output, HasSubstr("bogus_key"));
  EXPECT_THAT(run->output, Not(HasSubstr("serving")));

  absl::StatusOr<CommandResult> missing =
      RunCommand({BerthdPath(), "--config", (*daemon)->dir() + "/none.yaml"});
  ASSERT_TRUE(missing.ok());
  EXPECT_NE(missing->exit_code, 0);
  EXPECT_THAT(missing->output, HasSubstr("none.yaml"));
}

}  // namespace
}  // namespace berth::testing
