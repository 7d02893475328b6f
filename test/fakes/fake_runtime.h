#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "cni/plugin.h"
#include "pod/monitor.h"
#include "pod/runtime.h"

namespace berth::testing {

// The pid the fakes report for containers and monitors: never a process (pids stay below
// pid_max, at most 2^22), so nothing the managers signal or wait for with it is real.
inline constexpr pid_t kNoSuchPid = 1 << 22;

// One in-memory OCI runtime shared by every handler, with its monitor: containers move through
// created/running/stopped as the calls say; every call is logged ("create <id>", "start <id>",
// "kill <id> <signal>", "delete <id>"); a call can be made to fail, and Start can be held at a
// gate ("held start <id>" is logged when one waits there). Thread-safe.
class FakeRuntime {
 public:
  pod::RuntimeFactory Runtimes() {
    return [this](const config::Config& config, const std::string& handler)
               -> std::unique_ptr<pod::OciRuntime> {
      if (!config.runtimes.contains(handler)) return nullptr;
      return std::make_unique<Runtime>(this);
    };
  }
  pod::MonitorFactory Monitors() {
    return [this](const pod::OciRuntime*, const config::Config&) -> pod::MonitorPtr {
      return std::make_unique<Monitor>(this);
    };
  }

  // The next calls of `verb` ("create", "start", "delete", "state") fail with `status`.
  void FailNext(const std::string& verb, absl::Status status, int times = 1) {
    absl::MutexLock lock(&mu_);
    failures_[verb] = {std::move(status), times};
  }
  // Start waits until Open() (tests that a Start in flight holds nothing else up).
  void HoldStarts() { gate_ = std::make_unique<absl::Notification>(); }
  void OpenStarts() { gate_->Notify(); }
  void SetStatus(const std::string& id, const std::string& status) {
    absl::MutexLock lock(&mu_);
    state_[id] = status;
  }
  std::string StatusOf(const std::string& id) const {
    absl::MutexLock lock(&mu_);
    auto it = state_.find(id);
    return it == state_.end() ? "" : it->second;
  }
  std::vector<std::string> Calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  bool Called(const std::string& call) const {
    absl::MutexLock lock(&mu_);
    for (const std::string& c : calls_) {
      if (c == call) return true;
    }
    return false;
  }

 private:
  void Log(const std::string& what) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(what);
  }
  absl::Status Call(const std::string& verb, const std::string& id) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(verb + " " + id);
    auto it = failures_.find(verb);
    if (it != failures_.end() && it->second.second > 0) {
      --it->second.second;
      return it->second.first;
    }
    return absl::OkStatus();
  }

  class Runtime final : public pod::OciRuntime {
   public:
    explicit Runtime(FakeRuntime* fake) : fake_(fake) {}
    absl::Status Start(const std::string& id) override {
      if (fake_->gate_) {
        fake_->Log("held start " + id);
        fake_->gate_->WaitForNotification();
      }
      if (absl::Status s = fake_->Call("start", id); !s.ok()) return s;
      fake_->SetStatus(id, "running");
      return absl::OkStatus();
    }
    absl::Status Kill(const std::string& id, int signal, bool) override {
      if (absl::Status s = fake_->Call("kill", id + " " + std::to_string(signal)); !s.ok()) return s;
      fake_->SetStatus(id, "stopped");
      return absl::OkStatus();
    }
    absl::Status Delete(const std::string& id, bool) override {
      if (absl::Status s = fake_->Call("delete", id); !s.ok()) return s;
      absl::MutexLock lock(&fake_->mu_);
      fake_->state_.erase(id);
      return absl::OkStatus();
    }
    absl::StatusOr<pod::ContainerState> State(const std::string& id) override {
      if (absl::Status s = fake_->Call("state", id); !s.ok()) return s;
      const std::string status = fake_->StatusOf(id);
      if (status.empty()) return absl::NotFoundError(id + " does not exist");
      return pod::ContainerState{status, kNoSuchPid, ""};
    }
    absl::Status Update(const std::string& id, const std::string&) override {
      return fake_->Call("update", id);
    }
    const std::string& path() const override { return path_; }
    const std::string& root() const override { return path_; }

   private:
    FakeRuntime* fake_;
    const std::string path_ = "/fake/runtime";
  };

  class Monitor final : public pod::Monitor {
   public:
    explicit Monitor(FakeRuntime* fake) : fake_(fake) {}
    absl::StatusOr<pid_t> Create(const pod::MonitorSpec& spec) override {
      if (absl::Status s = fake_->Call("create", spec.id); !s.ok()) return s;
      fake_->SetStatus(spec.id, "created");
      return kNoSuchPid;
    }
    absl::StatusOr<pod::ExecResult> Exec(const pod::ExecSpec& spec) override {
      if (absl::Status s = fake_->Call("exec", spec.container_id); !s.ok()) return s;
      return pod::ExecResult{};
    }

   private:
    FakeRuntime* fake_;
  };

  mutable absl::Mutex mu_;
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> state_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::pair<absl::Status, int>> failures_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<absl::Notification> gate_;
};

// A NetworkPlugin that hands out 10.99.0.N and remembers who has one. Thread-safe.
class FakeNetwork final : public cni::NetworkPlugin {
 public:
  absl::StatusOr<cni::Attachment> Attach(const cni::NetworkConf& network,
                                         const cni::AttachSpec& spec) override {
    absl::MutexLock lock(&mu_);
    const std::string ip = "10.99.0." + std::to_string(++next_);
    attached_[spec.container_id] = ip;
    return cni::Attachment{network.name, R"({"cniVersion":"1.0.0"})", {{ip + "/24", "", false}}};
  }
  absl::Status Detach(const cni::AttachSpec& spec) override {
    absl::MutexLock lock(&mu_);
    attached_.erase(spec.container_id);
    return absl::OkStatus();
  }
  absl::Status Check(const cni::AttachSpec&) override { return absl::OkStatus(); }
  absl::StatusOr<cni::Attachment> Cached(const std::string& id, const std::string&) override {
    absl::MutexLock lock(&mu_);
    if (!attached_.contains(id)) return absl::NotFoundError(id);
    return cni::Attachment{"fake", "{}", {{attached_[id] + "/24", "", false}}};
  }
  std::vector<cni::AttachSpec> CachedAttachments() override {
    absl::MutexLock lock(&mu_);
    std::vector<cni::AttachSpec> out;
    for (const auto& [id, ip] : attached_) out.push_back({.container_id = id});
    return out;
  }
  size_t Attached() const {
    absl::MutexLock lock(&mu_);
    return attached_.size();
  }

 private:
  mutable absl::Mutex mu_;
  int next_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::string> attached_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::testing
