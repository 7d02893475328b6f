#include "cri/daemon.h"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/reaper.h"
#include "base/sqlite.h"
#include "base/status_macros.h"
#include "base/steps.h"
#include "image/fetch_helper.h"
#include "image/reference.h"
#include "image/registry.h"
#include "pod/apparmor.h"
#include "pod/cgroup_support.h"
#include "pod/monitor.h"
#include "pod/orphans.h"
#include "pod/sandbox_manager.h"
#include "base/version.h"
#include "cni/plugin.h"
#include "cri/grpc_poller.h"
#include "cri/helpers.h"
#include "cri/image_service.h"
#include "cri/instrumentation.h"
#include "cri/network_metrics.h"
#include "cri/node_check.h"
#include "cri/node_metrics.h"
#include "cri/listen_socket.h"
#include "cri/runtime_service.h"
#include "base/work_pool.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/resource_quota.h"
#include "spdlog/spdlog.h"

namespace berth::cri {
namespace {

// kubelet sends and accepts CRI messages up to 16 MiB (e.g. ListContainers on a busy node).
constexpr int kMaxMessageBytes = 16 << 20;
// gRPC's synchronous threads serve only the calls answered from memory (lists, statuses,
// version, stats); the long calls wait on the WorkPool, which grows as far as a node drain needs.
constexpr int kMaxServerThreads = 64;
constexpr size_t kMaxLongCallThreads = 256;
constexpr absl::Duration kLongCallThreadIdle = absl::Seconds(30);
constexpr auto kShutdownGrace = std::chrono::seconds(10);

// Adopted children are reaped on SIGCHLD; those left for later (base/reaper.h) this soon after.
constexpr std::chrono::milliseconds kReapDeferredAfter{100};
constexpr std::chrono::seconds kYoungAdopted{10};

sigset_t DaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGCHLD);
  return set;
}

absl::Status MakeStateDirs(const config::Config& config) {
  RETURN_IF_ERROR(MakeDirs(config.root, 0711));
  RETURN_IF_ERROR(MakeDirs(config.run_root, 0711));
  // What holds container root filesystems, pod files and shm, and default logs is root's alone:
  // through a world-readable path any host user could run a setuid binary or open a device node
  // that container root planted (the CVE-2021-41103 class). Directories an older berth made
  // 0755 are narrowed too.
  for (const std::string& dir :
       {config.root + "/containers", config.root + "/sandboxes", config.root + "/logs",
        config.run_root + "/pods"}) {
    RETURN_IF_ERROR(MakeDirs(dir, 0700));
    if (::chmod(dir.c_str(), 0700) != 0) return ErrnoToStatus(errno, absl::StrCat("chmod ", dir));
  }
  // The CNI results that DEL needs are kept on root: after a reboot (run_root is a tmpfs) a pod's
  // IP and port mappings are still released when kubelet stops it. An older berth kept them in
  // run_root: they move over.
  const std::string cache = config.root + "/cni-cache";
  const std::string old_cache = config.run_root + "/cni-cache";
  RETURN_IF_ERROR(MakeDirs(cache, 0700));
  std::error_code ec;
  if (std::filesystem::is_directory(old_cache, ec)) {
    for (const auto& entry : std::filesystem::directory_iterator(old_cache, ec)) {
      const std::string to = cache + "/" + entry.path().filename().string();
      if (!std::filesystem::exists(to, ec)) {
        absl::StatusOr<std::string> text = ReadFile(entry.path().string());
        if (text.ok()) RETURN_IF_ERROR(WriteFileAtomic(to, *text, 0600));
      }
    }
    std::filesystem::remove_all(old_cache, ec);
  }
  return absl::OkStatus();
}

void WarnMissingHelpers(const config::Config& config) {
  for (const NodeFinding& f : CheckHelpers(config)) {
    if (f.level != NodeFinding::Level::kOk) spdlog::warn("{}: {}", f.what, f.detail);
  }
}

// Patterns of images never garbage-collected: images.pinned and the configured pause image.
std::vector<std::string> PinnedImages(const config::Config& config) {
  std::vector<std::string> pinned = config.images.pinned;
  if (!config.pause.image.empty()) {
    if (auto ref = image::ParseReference(config.pause.image); ref.ok()) {
      pinned.push_back(ref->digest.empty() ? ref->TagRef() : ref->DigestRef());
    }
  }
  return pinned;
}

}  // namespace

void BlockDaemonSignals() {
  sigset_t set = DaemonSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

Daemon::Daemon(config::LoadOptions load_options, config::Config config)
    : load_options_(std::move(load_options)),
      config_(std::move(config)),
      notifier_(ServiceNotifier::FromEnvironment()),
      inherited_(TakeInheritedSockets()) {}

absl::Status Daemon::Run() {
  std::shared_ptr<const config::Config> config = config_.Get();
  RETURN_IF_ERROR(MakeStateDirs(*config));
  // Before any monitor starts: what berthd's children leave running becomes its own child.
  RETURN_IF_ERROR(BecomeSubreaper());
  if (!inherited_.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket activation: ", inherited_.status().message()));
  }
  ASSIGN_OR_RETURN(ListenSocket socket,
                   ListenSocket::FromInherited(config->listen, std::move(*inherited_)));
  if (config->metrics.enabled) {
    RETURN_IF_ERROR(metrics_.Serve(config->metrics.address));
  }
  SetStepObserver([this](absl::string_view operation, absl::string_view step, double seconds) {
    metrics_.RecordStep(operation, step, seconds);
  });
  absl::Cleanup no_more_steps = [] { SetStepObserver(nullptr); };
  SetTransactionObserver(
      [this](double seconds, bool committed) { metrics_.RecordTransaction(seconds, committed); });
  absl::Cleanup no_more_transactions = [] { SetTransactionObserver(nullptr); };
  WarnMissingHelpers(*config);

  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(config->root + "/berth.db"));
  ASSIGN_OR_RETURN(std::unique_ptr<image::ImageStore> images,
                   image::ImageStore::Open(db.get(), config->root, PinnedImages(*config)));
  const HelperPaths helpers = ResolveHelpers(*config);
  // Registries and layers are dealt with by berth-fetch, one process per request.
  image::FetchHelperClient fetch(
      {.path = helpers.fetch, .stall_timeout = config->images.stall_timeout});
  image::ImagePuller puller(
      images.get(), &fetch, [this] { return config_.Get(); },
      [&fetch](const std::string& blob, const std::string& dest, const image::UnpackLimits& limits) {
        return fetch.Unpack(blob, dest, limits);
      },
      [this](absl::string_view stage, double seconds, int64_t bytes) {
        metrics_.RecordPullStage(stage, seconds, bytes);
      });
  const std::string pause_rootfs = config->run_root + "/pause/rootfs";
  if (absl::Status s = PreparePauseRootfs(pause_rootfs, helpers.pause); !s.ok()) {
    spdlog::warn("pods cannot start: {}", s.message());
  }
  cni::CniExecPlugin network({.bin_dirs = config->network.bin_dirs,
                              .cache_dir = config->root + "/cni-cache",
                              .on_error = [this](absl::string_view command,
                                                 absl::string_view plugin) {
                                metrics_.RecordCniError(command, plugin);
                              }});
  InstrumentedNetworkPlugin measured_network(&network, *metrics_.registry());
  const pod::CgroupSupport cgroups = pod::ProbeCgroupSupport();
  spdlog::info("cgroups: {}", cgroups.Describe());
  pod::SandboxManager sandboxes(db.get(), [this] { return config_.Get(); }, &measured_network,
                                {.monitor_path = helpers.monitor,
                                 .pause_rootfs = pause_rootfs,
                                 .pause_image =
                                     [&](const std::string& name) -> absl::StatusOr<image::ImagePtr> {
                                   absl::StatusOr<image::ImagePtr> have = images->Resolve(name);
                                   if (have.ok()) return have;
                                   ASSIGN_OR_RETURN(image::PullResult pulled,
                                                    puller.Pull(name, std::nullopt));
                                   return pulled.image;
                                 },
                                 .images = images.get(),
                                 .cgroups = cgroups});
  pod::EventBus events;
  sandboxes.SetEventBus(&events);
  RETURN_IF_ERROR(sandboxes.Recover());
  pod::AppArmor apparmor({.profile_dir = config->run_root + "/apparmor"});
  spdlog::info("apparmor: {}", apparmor.enabled() ? "enabled, RuntimeDefault is " +
                                                        std::string(pod::kAppArmorDefaultProfile)
                                                  : "not enabled on this host");
  pod::ContainerManager containers(db.get(), [this] { return config_.Get(); }, &sandboxes,
                                   images.get(), &events,
                                   {.monitor_path = helpers.monitor,
                                    .exec_path = helpers.exec,
                                    .apparmor = &apparmor,
                                    .on_exit = [this](const pod::Container& c,
                                                      const pod::Sandbox* sandbox) {
                                      metrics_.RecordExit(
                                          c.reason, sandbox ? sandbox->spec.namespace_name : "",
                                          sandbox ? sandbox->spec.name : "");
                                    }});
  sandboxes.SetContainerHooks(
      {.stop_all = [&](const std::string& id) { return containers.StopAllIn(id); },
       .remove_all = [&](const std::string& id) { return containers.RemoveAllIn(id); }});
  RETURN_IF_ERROR(containers.Recover());
  {
    // What no record explains: left by a berthd killed before it recorded its intent (older
    // versions) or by a reboot (CNI attachments whose IPs are still reserved).
    std::set<std::string> known;
    for (const std::string& id : sandboxes.Ids()) known.insert(id);
    for (const std::string& id : containers.Ids()) known.insert(id);
    const pod::SweepReport swept = pod::SweepOrphans(*config, known, &measured_network);
    spdlog::info("orphan sweep: {} runtime container(s), {} CNI attachment(s), {} mount(s), {} "
                 "path(s) removed", swept.runtime_containers, swept.network_attachments,
                 swept.mounts, swept.paths);
    metrics_.RecordRecovery({.pods = static_cast<int>(sandboxes.Ids().size()),
                             .containers = containers.recovery().loaded,
                             .settled = containers.recovery().settled,
                             .orphan_runtime_containers = swept.runtime_containers,
                             .orphan_network_attachments = swept.network_attachments,
                             .orphan_mounts = swept.mounts,
                             .orphan_paths = swept.paths});
  }

  streaming::Server streaming(config->streaming, &containers, &sandboxes);
  RETURN_IF_ERROR(streaming.Start());
  auto node_metrics = std::make_shared<NodeCollector>([&] {
    NodeCounts counts;
    for (const pod::SandboxPtr& s : sandboxes.List()) {
      if (s->state != pod::Sandbox::State::kReady) {
        ++counts.pods_not_ready;
        continue;
      }
      ++counts.pods_ready;
      ++(sandboxes.PauseMonitorAlive(*s) ? counts.pod_monitors_alive : counts.pod_monitors_gone);
    }
    for (const pod::ContainerPtr& c : containers.List()) {
      const size_t state = static_cast<size_t>(c->state);
      if (state < counts.containers.size()) ++counts.containers[state];
      // A created container has its monitor from its start on.
      if (c->state != pod::Container::State::kExited && c->InRuntime()) {
        ++(pod::MonitorAlive(c->monitor_pid, c->id, c->sandbox_id) ? counts.monitors_alive
                                                    : counts.monitors_gone);
      }
    }
    const streaming::Server::SessionCounts sessions = streaming.sessions();
    counts.sessions_active = sessions.active;
    counts.sessions_started = sessions.started;
    counts.sessions_refused = sessions.refused;
    counts.sessions_refused_unknown = sessions.refused_unknown;
    return counts;
  });
  metrics_.Add(node_metrics);
  absl::Cleanup no_node_metrics = [&] { metrics_.Remove(node_metrics); };
  WorkPool long_calls({.max_threads = kMaxLongCallThreads, .idle_timeout = kLongCallThreadIdle});
  RuntimeService runtime_service(&config_, &sandboxes, &containers, &events, &streaming,
                                 &long_calls);
  ImageService image_service(images.get(), &puller, &metrics_, &long_calls);
  grpc::ServerBuilder builder;
  if (socket.adopted_fd() < 0) {
    builder.AddListeningPort(absl::StrCat("unix:", socket.path()),
                             grpc::InsecureServerCredentials());
  }
  builder.RegisterService(&runtime_service);
  builder.RegisterService(&image_service);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  grpc::ResourceQuota quota("berthd");
  quota.SetMaxThreads(kMaxServerThreads);
  builder.SetResourceQuota(quota);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<InstrumentationFactory>(&metrics_));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  GrpcPoller poller(&builder);

  // The socket must never be reachable with a wider mode than 0660, not even for a moment.
  mode_t old_umask = ::umask(0117);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ::umask(old_umask);
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot serve the CRI on ", socket.path()));
  }
  poller.Start();
  // A socket systemd made queued what came while berthd started: served from here.
  SocketAcceptor acceptor;
  if (socket.adopted_fd() >= 0) RETURN_IF_ERROR(acceptor.Start(socket.adopted_fd(), server.get()));
  RETURN_IF_ERROR(socket.Secure());
  spdlog::info("berthd {} serving the CRI on {}{}{}", kVersion, socket.path(),
               socket.adopted_fd() >= 0 ? " (the socket systemd passed)" : "",
               config->metrics.enabled ? ", metrics on http://" + config->metrics.address : "");

  auto notify = [this](absl::string_view state) {
    if (absl::Status s = notifier_.Notify(state); !s.ok()) {
      spdlog::warn("service manager: {}", s.message());
    }
  };
  notify(absl::StrCat("READY=1\nSTATUS=serving the CRI on ", socket.path()));
  const std::optional<std::chrono::microseconds> watchdog = notifier_.watchdog_interval();
  auto next_watchdog = std::chrono::steady_clock::now();

  sigset_t signals = DaemonSignals();
  bool deferred = false;
  for (;;) {
    if (watchdog && std::chrono::steady_clock::now() >= next_watchdog) {
      notify("WATCHDOG=1");  // from this loop: a berthd stuck here is a berthd to restart
      next_watchdog = std::chrono::steady_clock::now() + *watchdog;
    }
    // What berthd's children left to it and that has exited since: monitors that conmon's
    // double fork left, containers whose monitor died (ExecSync reaps its own processes).
    int sig = 0;
    std::optional<std::chrono::nanoseconds> wait;
    if (deferred) wait = kReapDeferredAfter;
    if (watchdog) {
      const auto until = std::max<std::chrono::nanoseconds>(
          next_watchdog - std::chrono::steady_clock::now(), std::chrono::nanoseconds(0));
      wait = wait ? std::min(*wait, until) : until;
    }
    if (wait) {
      const timespec soon = {.tv_sec = static_cast<time_t>(wait->count() / 1000000000),
                             .tv_nsec = static_cast<long>(wait->count() % 1000000000)};
      sig = sigtimedwait(&signals, nullptr, &soon);
    } else {
      sig = sigwaitinfo(&signals, nullptr);
    }
    if (sig < 0 || sig == SIGCHLD) {
      if (sig >= 0 || (errno == EAGAIN && deferred)) {
        ReapAdoptedChildren(kYoungAdopted, &deferred);
      }
      continue;
    }
    if (sig == SIGHUP) {
      if (absl::Status s = notifier_.NotifyReloading(); !s.ok()) {
        spdlog::warn("service manager: {}", s.message());
      }
      Reload();
      notify("READY=1");
      continue;
    }
    spdlog::info("signal {}: shutting down", sig);
    notify("STOPPING=1");
    break;
  }
  // What connects from now on waits on systemd's socket for the next berthd.
  acceptor.Stop();
  // Open event streams would hold the shutdown for its whole grace period.
  runtime_service.EndEventStreams();
  server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  server->Wait();
  poller.Stop();
  long_calls.Shutdown();
  streaming.Stop();
  containers.Shutdown();
  metrics_.StopServing();
  if (acceptor.failed()) {
    return absl::UnavailableError("stopped: the CRI socket the service manager passed failed");
  }
  spdlog::info("berthd stopped");
  return absl::OkStatus();
}

void Daemon::Reload() {
  absl::StatusOr<config::Config> next = config::Load(load_options_);
  if (!next.ok()) {
    spdlog::error("SIGHUP: configuration not reloaded: {}", next.status().message());
    return;
  }
  std::shared_ptr<const config::Config> current = config_.Get();
  if (next->listen != current->listen || next->root != current->root ||
      next->run_root != current->run_root || next->metrics != current->metrics ||
      next->log_format != current->log_format) {
    spdlog::warn(
        "SIGHUP: changes to listen, root, run_root, metrics and log_format apply after a restart");
    next->log_format = current->log_format;
    next->listen = current->listen;
    next->root = current->root;
    next->run_root = current->run_root;
    next->metrics = current->metrics;
  }
  // Said before the level changes, so that it is seen whatever the new level is.
  spdlog::info("SIGHUP: configuration reloaded (log level {})", next->log_level);
  auto level = ParseLogLevel(next->log_level);
  if (level.ok()) {
    SetLogLevel(*level);
  }
  config_.Set(*std::move(next));
}

}  // namespace berth::cri
