#include "base/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/logging.h"

namespace berth {

const std::vector<std::string>& AllFailpoints() {
  static const auto* const kAll = new std::vector<std::string>({
      // RunPodSandbox
      "sandbox.run.intent_recorded",
      "sandbox.run.pod_files_written",
      "sandbox.run.shm_mounted",
      "sandbox.run.netns_created",
      "sandbox.run.network_attached",
      "sandbox.run.pod_monitor_started",
      "sandbox.run.pause_created",
      "sandbox.run.pause_started",
      // CreateContainer
      "container.create.intent_recorded",
      "container.create.rootfs_mounted",
      "container.create.spec_written",
      // StartContainer
      "container.start.begin",
      "container.start.runtime_created",
      "container.start.runtime_started",
      // StopPodSandbox
      "sandbox.stop.containers_stopped",
      "sandbox.stop.pause_stopped",
      "sandbox.stop.network_detached",
      // RemovePodSandbox (and RemoveContainer, which it does for each container)
      "sandbox.remove.containers_removed",
      "container.remove.runtime_deleted",
      "container.remove.rootfs_removed",
      "sandbox.remove.runtime_deleted",
      "sandbox.remove.netns_removed",
      "sandbox.remove.files_removed",
      // PullImage
      "image.pull.manifest_fetched",
      "image.pull.config_fetched",
      "image.pull.layer_fetched",
      "image.pull.layer_unpacked",
      "image.pull.layers_ready",
  });
  return *kAll;
}

#ifdef BERTH_FAILPOINTS
namespace {

struct Armed {
  bool kill = false;
  int delay_ms = -1;  // >= 0: the step waits this long, then goes on
  int remaining = -1;  // hits left; -1 = every hit
};

struct Registry {
  // Whether anything is armed, once the environment was read: unarmed hits cost one load.
  std::atomic<bool> loaded{false}, any_armed{false};
  absl::Mutex mu;
  std::map<std::string, Armed, std::less<>> armed ABSL_GUARDED_BY(mu);
};

Registry& TheRegistry() {
  static auto* const registry = new Registry;
  return *registry;
}

void Parse(absl::string_view spec, std::map<std::string, Armed, std::less<>>& out) {
  out.clear();
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    std::pair<absl::string_view, absl::string_view> mode_count =
        absl::StrSplit(kv.second, absl::MaxSplits('*', 1));
    Armed armed;
    absl::string_view delay = mode_count.first;
    if (mode_count.first == "kill") {
      armed.kill = true;
    } else if (absl::ConsumePrefix(&delay, "delay:")) {
      if (!absl::SimpleAtoi(delay, &armed.delay_ms) || armed.delay_ms < 0) {
        spdlog::error("failpoint {}: bad delay \"{}\", ignored", kv.first, delay);
        continue;
      }
    } else if (mode_count.first != "error") {
      spdlog::error("failpoint {}: unknown mode \"{}\" (error, kill or delay:<ms>), ignored",
                    kv.first, mode_count.first);
      continue;
    }
    if (!mode_count.second.empty() && !absl::SimpleAtoi(mode_count.second, &armed.remaining)) {
      spdlog::error("failpoint {}: bad count \"{}\", ignored", kv.first, mode_count.second);
      continue;
    }
    out[std::string(kv.first)] = armed;
  }
}

}  // namespace

void ArmFailpoints(absl::string_view spec) {
  Registry& r = TheRegistry();
  absl::MutexLock lock(&r.mu);
  Parse(spec, r.armed);
  r.any_armed = !r.armed.empty();
  r.loaded = true;
}

absl::Status Failpoint(absl::string_view name) {
  Registry& r = TheRegistry();
  if (r.loaded && !r.any_armed) return absl::OkStatus();
  bool kill = false;
  int delay_ms = -1;
  {
    absl::MutexLock lock(&r.mu);
    if (!r.loaded) {
      const char* env = std::getenv("BERTH_FAILPOINTS");
      Parse(env == nullptr ? "" : env, r.armed);
      r.any_armed = !r.armed.empty();
      r.loaded = true;
    }
    auto it = r.armed.find(name);
    if (it == r.armed.end()) {
      const std::vector<std::string>& all = AllFailpoints();
      if (std::find(all.begin(), all.end(), name) == all.end()) {
        std::fprintf(stderr, "failpoint %.*s is not in AllFailpoints()\n",
                     static_cast<int>(name.size()), name.data());
        std::abort();
      }
      return absl::OkStatus();
    }
    if (it->second.remaining == 0) return absl::OkStatus();
    if (it->second.remaining > 0) --it->second.remaining;
    kill = it->second.kill;
    delay_ms = it->second.delay_ms;
  }
  if (delay_ms >= 0) {
    spdlog::warn("failpoint {} hit: delaying the step {} ms", name, delay_ms);
    absl::SleepFor(absl::Milliseconds(delay_ms));
    return absl::OkStatus();
  }
  spdlog::warn("failpoint {} hit: {}", name, kill ? "killing berthd" : "failing the step");
  if (kill) {
    spdlog::default_logger()->flush();
    ::kill(::getpid(), SIGKILL);
    ::pause();
  }
  return absl::InternalError(absl::StrCat("failpoint ", name));
}
#endif

}  // namespace berth
