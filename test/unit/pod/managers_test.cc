// SandboxManager and ContainerManager with a fake OCI runtime, monitor and network: the intent,
// undo, recovery and retry paths, which real parts make hard to reach.

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pod/container_manager.h"
#include "pod/record_store.h"
#include "pod/sandbox_manager.h"
#include "test/fakes/fake_clock.h"
#include "test/fakes/fake_runtime.h"
#include "test/lib/eventually.h"

namespace berth::pod {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

namespace fs = std::filesystem;
using testing::Eventually;

class ManagersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-managers-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto config = std::make_shared<config::Config>();
    config->root = dir_ + "/root";
    config->run_root = dir_ + "/run";
    config->runtimes = {{"runc", {"/usr/sbin/runc", dir_ + "/run/runc"}}};
    config->default_runtime = "runc";
    config_ = config;
    ASSERT_TRUE(MakeDirs(dir_ + "/pause").ok());
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/pause/pause", "#!/bin/true\n", 0755).ok());
    ASSERT_TRUE(MakeDirs(config->root).ok());
    ASSERT_TRUE(MakeDirs(config->run_root + "/exits").ok());
    Open();
  }

  void TearDown() override {
    Close();
    for (pid_t pid : monitors_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    fs::remove_all(dir_);
  }

  // A berthd start: fresh managers on the same database and directories.
  void Open() {
    Close();
    auto db = SqliteDb::Open(dir_ + "/root/berth.db");
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
    auto images = image::ImageStore::Open(db_.get(), dir_ + "/root", {});
    ASSERT_TRUE(images.ok()) << images.status();
    images_ = *std::move(images);
    auto source = [this] { return config_; };
    sandboxes_ = std::make_unique<SandboxManager>(
        db_.get(), source, &network_,
        SandboxManager::Options{.pause_rootfs = dir_ + "/pause",
                                .runtimes = fake_.Runtimes(),
                                .monitors = fake_.Monitors(),
                                .clock = &clock_});
    ASSERT_TRUE(sandboxes_->Recover().ok());
    containers_ = std::make_unique<ContainerManager>(
        db_.get(), source, sandboxes_.get(), images_.get(), nullptr,
        ContainerManager::Options{.runtimes = fake_.Runtimes(),
                                  .monitors = fake_.Monitors(),
                                  .clock = &clock_});
    sandboxes_->SetContainerHooks(
        {.stop_all = [this](const std::string& id) { return containers_->StopAllIn(id); },
         .remove_all = [this](const std::string& id) { return containers_->RemoveAllIn(id); }});
    ASSERT_TRUE(containers_->Recover().ok());
  }

  void Close() {
    containers_.reset();
    sandboxes_.reset();
    images_.reset();
    db_.reset();
  }

  static SandboxSpec Pod(const std::string& name) {
    return {.name = name, .uid = name + "-uid", .namespace_name = "default", .hostname = name,
            .host_network = true, .host_ipc = true};
  }

  std::vector<std::string> Intents() {
    RecordStore sandboxes(db_.get(), "sandboxes");
    RecordStore containers(db_.get(), "containers", "sandbox_id");
    std::vector<std::string> out;
    for (RecordStore* store : {&sandboxes, &containers}) {
      const std::vector<RecordStore::Intent> intents = *store->LoadIntents();
      for (const RecordStore::Intent& intent : intents) out.push_back(intent.id);
    }
    return out;
  }

  // Entries under root and run_root that belong to `id`.
  std::vector<std::string> FilesOf(const std::string& id) {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.path().string().find(id) != std::string::npos) out.push_back(e.path().string());
    }
    return out;
  }

  // A process standing in for container `id`'s monitor: its command line names the container.
  // Returns once it has exec'd (until then its command line is this test's, and a recovery that
  // looked would find no monitor). Killed at the end of the test.
  pid_t LiveMonitor(const std::string& id) {
    int exec_done[2];
    EXPECT_EQ(::pipe2(exec_done, O_CLOEXEC), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sleep", id.c_str(), "60", nullptr);
      ::_exit(127);
    }
    ::close(exec_done[1]);
    char byte;
    while (::read(exec_done[0], &byte, 1) < 0 && errno == EINTR) {
    }
    ::close(exec_done[0]);  // end of file: the exec closed the child's end
    monitors_.push_back(pid);
    return pid;
  }

  // A container record as a create that finished would have left it; but for one CREATED with
  // `in_runtime` false, as if the runtime had made it too (its start cut short after that).
  Container PutContainer(const std::string& sandbox_id, const std::string& id,
                         Container::State state, pid_t monitor_pid, bool in_runtime = true) {
    Container c;
    c.id = id;
    c.sandbox_id = sandbox_id;
    c.spec.name = id;
    c.state = state;
    c.runtime_handler = "runc";
    c.monitor_pid = monitor_pid;
    if (in_runtime) c.pid = testing::kNoSuchPid;
    RecordStore store(db_.get(), "containers", "sandbox_id");
    EXPECT_TRUE(store.Load().ok());
    EXPECT_TRUE(store.Put(id, id + "_key", sandbox_id, ContainerToJson(c)).ok());
    return c;
  }

  std::string dir_;
  std::shared_ptr<const config::Config> config_;
  testing::FakeRuntime fake_;
  testing::FakeNetwork network_;
  testing::FakeClock clock_;
  std::unique_ptr<SqliteDb> db_;
  std::unique_ptr<image::ImageStore> images_;
  std::unique_ptr<SandboxManager> sandboxes_;
  std::unique_ptr<ContainerManager> containers_;
  std::vector<pid_t> monitors_;
};

TEST_F(ManagersTest, ASandboxIsRecordedOnceItsPauseRuns) {
  absl::StatusOr<std::string> id = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_TRUE(fake_.Called("create " + *id));
  EXPECT_TRUE(fake_.Called("start " + *id));
  EXPECT_THAT(Intents(), IsEmpty());
  Open();
  ASSERT_THAT(sandboxes_->List(), SizeIs(1));
  EXPECT_EQ(sandboxes_->List()[0]->state, Sandbox::State::kReady);
}

TEST_F(ManagersTest, AFailedStartUndoesItselfAndDropsItsIntent) {
  fake_.FailNext("start", absl::InternalError("runc says no"));
  absl::StatusOr<std::string> id = sandboxes_->Run(Pod("web"));
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("runc says no"));
  const std::vector<std::string> calls = fake_.Calls();
  ASSERT_FALSE(calls.empty());
  const std::string created = calls[0].substr(std::string("create ").size());
  EXPECT_TRUE(fake_.Called("delete " + created));
  EXPECT_THAT(Intents(), IsEmpty());
  EXPECT_THAT(FilesOf(created), IsEmpty());
  EXPECT_THAT(sandboxes_->List(), IsEmpty());
  // The name is free again.
  EXPECT_TRUE(sandboxes_->Run(Pod("web")).ok());
}

TEST_F(ManagersTest, AStartCutShortIsUndoneAtTheNextStartAndAFailedUndoIsTriedAgain) {
  // What a berthd killed after the pause was created leaves: the intent, the pod's files, the
  // runtime's container.
  Sandbox s{.id = "cut1", .spec = Pod("web"), .runtime_handler = "runc"};
  RecordStore store(db_.get(), "sandboxes");
  ASSERT_TRUE(store.Intend(s.id, SandboxToJson(s)).ok());
  ASSERT_TRUE(MakeDirs(sandboxes_->PodDir("cut1")).ok());
  ASSERT_TRUE(WriteFileAtomic(sandboxes_->PodDir("cut1") + "/hostname", "web").ok());
  ASSERT_TRUE(MakeDirs(sandboxes_->BundleDir("cut1")).ok());
  ASSERT_TRUE(WriteFileAtomic(sandboxes_->BundleDir("cut1") + "/config.json", "{}").ok());
  fake_.SetStatus("cut1", "created");
  fake_.FailNext("delete", absl::InternalError("runtime is wedged"));
  Open();
  EXPECT_THAT(Intents(), SizeIs(1));  // kept: the undo failed
  EXPECT_EQ(fake_.StatusOf("cut1"), "created");
  Open();
  EXPECT_THAT(Intents(), IsEmpty());
  EXPECT_EQ(fake_.StatusOf("cut1"), "");
  EXPECT_THAT(FilesOf("cut1"), IsEmpty());
  EXPECT_THAT(sandboxes_->List(), IsEmpty());
}

TEST_F(ManagersTest, AResultWhoseCallerLeftIsKeptForTheSameRequestOnly) {
  absl::StatusOr<std::string> first =
      sandboxes_->Run(Pod("web"), {.gone = [] { return true; }});
  EXPECT_TRUE(absl::IsDeadlineExceeded(first.status())) << first.status();
  EXPECT_THAT(sandboxes_->List(), IsEmpty());  // kubelet has not seen it yet

  SandboxSpec other = Pod("web");
  other.labels["changed"] = "yes";
  absl::StatusOr<std::string> refused = sandboxes_->Run(other);
  EXPECT_TRUE(absl::IsAlreadyExists(refused.status()));
  EXPECT_THAT(refused.status().message(), HasSubstr("different config"));

  absl::StatusOr<std::string> retry = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  ASSERT_THAT(sandboxes_->List(), SizeIs(1));
  EXPECT_EQ(sandboxes_->List()[0]->id, *retry);
  const std::vector<std::string> calls = fake_.Calls();
  EXPECT_EQ(std::count_if(calls.begin(), calls.end(),
                          [](const std::string& c) { return c.rfind("create ", 0) == 0; }),
            1);
}

TEST_F(ManagersTest, AKeptResultNobodyClaimsIsRemovedOnceItsTimeIsUp) {
  ASSERT_FALSE(sandboxes_->Run(Pod("web"), {.gone = [] { return true; }}).ok());
  clock_.Advance(absl::Minutes(4));
  containers_->RemoveExpired();
  EXPECT_THAT(sandboxes_->Ids(), SizeIs(1));  // still kept for the retry
  EXPECT_THAT(sandboxes_->List(), IsEmpty());
  clock_.Advance(absl::Minutes(2));           // keep_abandoned is 5 minutes
  containers_->RemoveExpired();
  EXPECT_THAT(sandboxes_->Ids(), IsEmpty());
  EXPECT_EQ(fake_.StatusOf(fake_.Calls()[0].substr(7)), "");  // "create <id>": deleted
  EXPECT_TRUE(sandboxes_->Run(Pod("web")).ok());
}

TEST_F(ManagersTest, TimesComeFromTheClock) {
  absl::StatusOr<std::string> pod = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ((*sandboxes_->Get(*pod))->created_at_ns, absl::ToUnixNanos(clock_.Now()));
  PutContainer(*pod, "timed", Container::State::kCreated, LiveMonitor("timed"));
  fake_.SetStatus("timed", "created");
  Open();
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(containers_->Start("timed").ok());
  EXPECT_EQ((*containers_->Get("timed"))->started_at_ns, absl::ToUnixNanos(clock_.Now()));
  // (finished_at is the exit file's time: an exit while berthd was down keeps its time.)
}

TEST_F(ManagersTest, AFinishedStopIsRememberedAndRemoveRemovesTheContainersAndThePause) {
  absl::StatusOr<std::string> pod = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  PutContainer(*pod, "app1", Container::State::kExited, LiveMonitor("app1"));
  PutContainer(*pod, "app2", Container::State::kExited, LiveMonitor("app2"));
  fake_.SetStatus("app1", "stopped");
  fake_.SetStatus("app2", "stopped");
  Open();
  ASSERT_TRUE(sandboxes_->Stop(*pod).ok());
  EXPECT_TRUE(fake_.Called("state " + *pod));
  EXPECT_TRUE((*sandboxes_->Get(*pod))->stopped);
  EXPECT_EQ(fake_.StatusOf(*pod), "");  // the stopped pause has left the runtime
  // Stopped is persisted: after a restart, stopping again (as kubelet and RemovePodSandbox do)
  // asks the runtime nothing.
  Open();
  const size_t calls = fake_.Calls().size();
  ASSERT_TRUE(sandboxes_->Stop(*pod).ok());
  EXPECT_THAT(fake_.Calls(), SizeIs(calls));
  ASSERT_TRUE(sandboxes_->Remove(*pod).ok());
  for (const std::string& id : {*pod, std::string("app1"), std::string("app2")}) {
    EXPECT_TRUE(fake_.Called("delete " + id)) << id;
    EXPECT_EQ(fake_.StatusOf(id), "") << id;
  }
  EXPECT_THAT(containers_->List(), IsEmpty());
  EXPECT_THAT(sandboxes_->Ids(), IsEmpty());
}

TEST_F(ManagersTest, AnExitedContainerLeavesTheRuntimeOneWhoseMonitorDiedDoesNot) {
  absl::StatusOr<std::string> pod = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  PutContainer(*pod, "done", Container::State::kRunning, LiveMonitor("done"));
  const pid_t lost_monitor = LiveMonitor("lost");
  PutContainer(*pod, "lost", Container::State::kRunning, lost_monitor);
  fake_.SetStatus("done", "stopped");
  fake_.SetStatus("lost", "running");
  Open();
  ASSERT_TRUE(WriteFileAtomic(containers_->ExitFile("done"), "0").ok());
  EXPECT_TRUE(Eventually([&] { return fake_.Called("delete done"); }));
  EXPECT_EQ((*containers_->Get("done"))->state, Container::State::kExited);
  EXPECT_EQ(fake_.StatusOf("done"), "");
  // No exit code: the container may outlive its monitor, and it stays in the runtime.
  ::kill(lost_monitor, SIGKILL);
  ::waitpid(lost_monitor, nullptr, 0);
  EXPECT_TRUE(Eventually([&] {
    return (*containers_->Get("lost"))->state == Container::State::kExited;
  }));
  EXPECT_FALSE(fake_.Called("delete lost"));
  EXPECT_EQ(fake_.StatusOf("lost"), "running");
  ASSERT_TRUE(containers_->Remove("done").ok());
  EXPECT_THAT(FilesOf("done"), IsEmpty());
}

TEST_F(ManagersTest, ACreateCutShortIsUndoneAtTheNextStart) {
  absl::StatusOr<std::string> pod = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  Container c{.id = "ctr1", .sandbox_id = *pod, .runtime_handler = "runc"};
  RecordStore store(db_.get(), "containers", "sandbox_id");
  ASSERT_TRUE(store.Intend(c.id, ContainerToJson(c)).ok());
  ASSERT_TRUE(MakeDirs(containers_->ContainerDir("ctr1")).ok());
  ASSERT_TRUE(WriteFileAtomic(containers_->ContainerDir("ctr1") + "/config.json", "{}").ok());
  ASSERT_TRUE(MakeDirs(containers_->MonitorDir("ctr1")).ok());
  ASSERT_TRUE(WriteFileAtomic(containers_->MonitorDir("ctr1") + "/oom", "").ok());
  fake_.SetStatus("ctr1", "created");
  Open();
  EXPECT_TRUE(fake_.Called("delete ctr1"));
  EXPECT_THAT(Intents(), IsEmpty());
  EXPECT_THAT(FilesOf("ctr1"), IsEmpty());
  EXPECT_THAT(containers_->List(), IsEmpty());
}

// The OCI spec is the bundle's config.json, read when exec or verbose status need it; the record
// (held in memory, rewritten at every state change) does not carry it. A record an older berth
// wrote with the spec in it loads, and the spec is not kept from it either.
TEST_F(ManagersTest, TheSpecIsReadFromTheBundleNotKeptInTheRecord) {
  absl::StatusOr<std::string> pod = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  Container c;
  c.id = "ctr3";
  c.sandbox_id = *pod;
  c.spec.name = "ctr3";
  c.state = Container::State::kRunning;
  c.runtime_handler = "runc";
  c.monitor_pid = LiveMonitor("ctr3");
  nlohmann::json older = nlohmann::json::parse(ContainerToJson(c));
  EXPECT_FALSE(older.contains("oci_spec"));
  older["oci_spec"] = R"({"ociVersion": "1.0.2", "process": {"args": ["old"]}})";
  {
    RecordStore store(db_.get(), "containers", "sandbox_id");
    ASSERT_TRUE(store.Load().ok());
    ASSERT_TRUE(store.Put(c.id, "ctr3_key", *pod, older.dump()).ok());
  }
  const std::string spec = R"({"ociVersion": "1.1.0", "process": {"args": ["sleep"]}})";
  ASSERT_TRUE(MakeDirs(containers_->ContainerDir("ctr3")).ok());
  ASSERT_TRUE(WriteFileAtomic(containers_->ContainerDir("ctr3") + "/config.json", spec).ok());
  fake_.SetStatus("ctr3", "running");
  Open();
  absl::StatusOr<ContainerPtr> loaded = containers_->Get("ctr3");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(containers_->OciSpec(**loaded).value_or(""), spec);
  EXPECT_THAT(ContainerToJson(**loaded), Not(HasSubstr("oci_spec")));

  ASSERT_EQ(::unlink((containers_->ContainerDir("ctr3") + "/config.json").c_str()), 0);
  absl::StatusOr<std::string> gone = containers_->OciSpec(**loaded);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("container ctr3: read its OCI spec"));
}

TEST_F(ManagersTest, AStartCutShortIsRunningAfterTheRestart) {
  absl::StatusOr<std::string> pod = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  PutContainer(*pod, "ctr2", Container::State::kCreated, LiveMonitor("ctr2"));
  fake_.SetStatus("ctr2", "running");  // runc start went through, RUNNING was not recorded
  Open();
  absl::StatusOr<ContainerPtr> c = containers_->Get("ctr2");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->state, Container::State::kRunning);
}

TEST_F(ManagersTest, ExitsAreRecordedWhileAStartIsInTheRuntime) {
  absl::StatusOr<std::string> pod = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  PutContainer(*pod, "slow", Container::State::kCreated, LiveMonitor("slow"));
  PutContainer(*pod, "other", Container::State::kRunning, LiveMonitor("other"));
  fake_.SetStatus("slow", "created");
  Open();
  fake_.HoldStarts();
  absl::Status started;
  std::thread starting([&] { started = containers_->Start("slow"); });
  ASSERT_TRUE(Eventually([&] { return fake_.Called("held start slow"); }));
  // The starting container's exit first: the watcher must not wait for the start with it.
  ASSERT_TRUE(WriteFileAtomic(containers_->ExitFile("slow"), "1").ok());
  ASSERT_TRUE(WriteFileAtomic(containers_->ExitFile("other"), "0").ok());
  EXPECT_TRUE(Eventually([&] {
    return (*containers_->Get("other"))->state == Container::State::kExited;
  }));
  EXPECT_EQ((*containers_->Get("slow"))->state, Container::State::kCreated);
  fake_.OpenStarts();
  starting.join();
  EXPECT_TRUE(started.ok()) << started;
  // RUNNING was recorded, then the exit it held back.
  ContainerPtr slow = *containers_->Get("slow");
  EXPECT_EQ(slow->state, Container::State::kExited);
  EXPECT_EQ(slow->exit_code, 1);
  EXPECT_GT(slow->started_at_ns, 0);
}

// CreateContainer leaves the runtime out; StartContainer has it make the container, then
// records the process. A berthd killed between the two finds a CREATED record without one: what
// the runtime and the monitor made is undone, and the container can start again, unless it can
// no longer (its root filesystem went with a reboot).
TEST_F(ManagersTest, AStartCutShortBeforeItsProcessWasRecordedIsUndoneAndStartsAgain) {
  absl::StatusOr<std::string> pod = sandboxes_->Run(Pod("web"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  PutContainer(*pod, "cut", Container::State::kCreated, 0, /*in_runtime=*/false);
  PutContainer(*pod, "rebooted", Container::State::kCreated, 0, /*in_runtime=*/false);
  const std::string rootfs = containers_->ContainerDir("cut") + "/rootfs";
  ASSERT_TRUE(MakeDirs(rootfs).ok());
  ASSERT_EQ(::mount("tmpfs", rootfs.c_str(), "tmpfs", 0, "size=64k"), 0) << std::strerror(errno);
  absl::Cleanup unmount = [&] { ::umount2(rootfs.c_str(), MNT_DETACH); };
  for (const std::string id : {"cut", "rebooted"}) {
    fake_.SetStatus(id, "created");
    ASSERT_TRUE(MakeDirs(containers_->MonitorDir(id)).ok());
    ASSERT_TRUE(WriteFileAtomic(containers_->MonitorDir(id) + "/oom", "").ok());
  }
  Open();
  for (const std::string id : {"cut", "rebooted"}) {
    EXPECT_TRUE(fake_.Called("delete " + id)) << id;
    EXPECT_EQ(fake_.StatusOf(id), "") << id;
    EXPECT_FALSE(fs::exists(containers_->MonitorDir(id))) << id;
  }
  ContainerPtr cut = *containers_->Get("cut");
  EXPECT_EQ(cut->state, Container::State::kCreated);
  EXPECT_EQ(cut->pid, 0);
  ContainerPtr rebooted = *containers_->Get("rebooted");
  EXPECT_EQ(rebooted->state, Container::State::kExited);
  EXPECT_EQ(rebooted->exit_code, 255);

  ASSERT_TRUE(containers_->Start("cut").ok());
  EXPECT_TRUE(fake_.Called("create cut"));
  cut = *containers_->Get("cut");
  EXPECT_EQ(cut->state, Container::State::kRunning);
  EXPECT_EQ(cut->pid, testing::kNoSuchPid);
  EXPECT_EQ(fake_.StatusOf("cut"), "running");
}

}  // namespace
}  // namespace berth::pod
