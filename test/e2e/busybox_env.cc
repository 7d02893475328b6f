#include "test/e2e/busybox_env.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "test/fixtures/image_builder.h"
#include "test/lib/process.h"

namespace berth::testing {

std::string BusyboxEnv::Unavailable() {
  if (::geteuid() != 0) return "containers need root";
  for (const char* tool : {"/usr/sbin/runc", "/usr/lib/cni/bridge", "/bin/busybox"}) {
    if (::access(tool, X_OK) != 0) return absl::StrCat(tool, " is not installed");
  }
  if (!RegistryAvailable()) return "docker-registry is not installed";
  return "";
}

absl::StatusOr<std::unique_ptr<TestRegistry>> BusyboxEnv::StartRegistry(
    const std::string& stop_signal) {
  absl::StatusOr<std::unique_ptr<TestRegistry>> registry = TestRegistry::Start();
  if (!registry.ok()) return registry.status();
  ImageSpec spec;
  spec.cmd = {"sh"};
  spec.stop_signal = stop_signal;
  if (absl::Status s = (*registry)->Push("busybox", "1", BuildImage({BusyboxLayer().Build()}, spec));
      !s.ok()) {
    return s;
  }
  return registry;
}

absl::StatusOr<std::unique_ptr<BerthDaemon>> BusyboxEnv::CreateDaemon(const TestRegistry& registry,
                                                                      const Options& o) {
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = BerthDaemon::Create(
      {.extra_yaml = absl::StrCat("images:\n  registries:\n    - {prefix: \"", registry.host(),
                                  "\", insecure: true}\n", o.extra_yaml),
       .extra_runtimes = o.extra_runtimes,
       .log_level = o.log_level});
  if (!daemon.ok()) return daemon.status();
  const std::string conflist = absl::StrCat(
      R"({"cniVersion": "1.0.0", "name": ")", o.network, R"(", "plugins": [
      {"type": "bridge", "bridge": ")", o.bridge, R"(", "isGateway": true, "ipMasq": false,
       "ipam": {"type": "host-local", "dataDir": ")", (*daemon)->dir(), R"(/ipam",
                "ranges": [[{"subnet": ")", o.subnet, R"("}]]}},
      {"type": "loopback"}]})");
  if (absl::Status s = WriteFileAtomic((*daemon)->cni_dir() + "/10-e2e.conflist", conflist);
      !s.ok()) {
    return s;
  }
  return daemon;
}

absl::StatusOr<BusyboxEnv> BusyboxEnv::Start(const Options& o) {
  BusyboxEnv env;
  absl::StatusOr<std::unique_ptr<TestRegistry>> registry = StartRegistry(o.stop_signal);
  if (!registry.ok()) return registry.status();
  env.registry = *std::move(registry);
  env.image = env.registry->host() + "/busybox:1";
  absl::StatusOr<std::unique_ptr<BerthDaemon>> daemon = CreateDaemon(*env.registry, o);
  if (!daemon.ok()) return daemon.status();
  env.daemon = *std::move(daemon);
  if (absl::Status s = env.daemon->Start(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), "\n", env.daemon->Log()));
  }
  if (absl::Status s = env.daemon->client().PullImage(env.image).status(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("pull ", env.image, ": ", s.message()));
  }
  return env;
}

void BusyboxEnv::RemoveBridge(const std::string& bridge) {
  RunCommand({"/usr/sbin/ip", "link", "del", bridge}).IgnoreError();
}

runtime::v1::PodSandboxConfig E2ePodConfig(const BerthDaemon& daemon, const std::string& name) {
  runtime::v1::PodSandboxConfig c;
  c.mutable_metadata()->set_name(name);
  c.mutable_metadata()->set_namespace_("e2e");
  c.mutable_metadata()->set_uid("uid-" + name);
  c.set_hostname(name);
  c.set_log_directory(daemon.dir() + "/logs/" + name);
  return c;
}

}  // namespace berth::testing
