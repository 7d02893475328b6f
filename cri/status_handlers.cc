// Version, Status, RuntimeConfig and UpdateRuntimeConfig: what kubelet asks first and then every
// few seconds.

#include <arpa/inet.h>

#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/logging.h"
#include "base/version.h"
#include "cni/conf.h"
#include "config/loader.h"
#include "cri/runtime_service.h"
#include "nlohmann/json.hpp"

namespace berth::cri {
namespace {

constexpr char kKubeletApiVersion[] = "0.1.0";
constexpr char kRuntimeApiVersion[] = "v1";

void AddCondition(runtime::v1::RuntimeStatus* status, const char* type, bool ok,
                  const std::string& reason, const std::string& message) {
  runtime::v1::RuntimeCondition* condition = status->add_conditions();
  condition->set_type(type);
  condition->set_status(ok);
  condition->set_reason(reason);
  condition->set_message(message);
}

}  // namespace

grpc::Status RuntimeService::Version(grpc::ServerContext*, const runtime::v1::VersionRequest*,
                                     runtime::v1::VersionResponse* response) {
  response->set_version(kKubeletApiVersion);
  response->set_runtime_name(kRuntimeName);
  response->set_runtime_version(kVersion);
  response->set_runtime_api_version(kRuntimeApiVersion);
  return grpc::Status::OK;
}

grpc::Status RuntimeService::Status(grpc::ServerContext*, const runtime::v1::StatusRequest* request,
                                    runtime::v1::StatusResponse* response) {
  std::shared_ptr<const config::Config> config = config_->Get();
  runtime::v1::RuntimeStatus* status = response->mutable_status();
  AddCondition(status, "RuntimeReady", true, "", "");
  auto network = cni::FindDefaultNetwork(config->network.conf_dir, config->network.bin_dirs,
                                         config->network.default_network);
  if (network.ok()) {
    AddCondition(status, "NetworkReady", true, "", "");
  } else {
    AddCondition(status, "NetworkReady", false, "NetworkPluginNotReady",
                 "Network plugin returns error: " + std::string(network.status().message()));
  }

  // "" is the default handler; every configured handler can be named by a RuntimeClass.
  auto add_handler = [&](const std::string& name) {
    runtime::v1::RuntimeHandler* h = response->add_runtime_handlers();
    h->set_name(name);
    const pod::HandlerFeatures f = sandboxes_->FeaturesOf(name);
    h->mutable_features()->set_recursive_read_only_mounts(f.recursive_read_only_mounts);
    // berth does not yet run pods in user namespaces (RunPodSandbox refuses them), so it
    // advertises none even where the runtime has idmapped mounts.
    h->mutable_features()->set_user_namespaces(false);
  };
  add_handler("");
  for (const auto& [name, handler] : config->runtimes) add_handler(name);
  // SupplementalGroupsPolicy Strict and ContainerStatus.user are implemented.
  response->mutable_features()->set_supplemental_groups_policy(true);

  if (request->verbose()) {
    auto& info = *response->mutable_info();
    info["config"] = config::ToJson(*config);
    {
      absl::MutexLock lock(&pod_cidr_mu_);
      info["podCIDR"] = nlohmann::json(pod_cidr_).dump();
    }
    nlohmann::json cni = {{"confDir", config->network.conf_dir},
                          {"binDirs", config->network.bin_dirs}};
    if (network.ok()) {
      cni["network"] = nlohmann::json::parse(network->list_json, nullptr, false);
      cni["path"] = network->path;
    } else {
      cni["error"] = std::string(network.status().message());
    }
    info["cniconfig"] = cni.dump();
    // The handlers a RuntimeClass can name, as cri-o shows them, with what each supports.
    nlohmann::json handlers = nlohmann::json::array();
    for (const auto& [name, handler] : config->runtimes) {
      const pod::HandlerFeatures f = sandboxes_->FeaturesOf(name);
      handlers.push_back({{"name", name},
                          {"default", name == config->default_runtime},
                          {"path", handler.path},
                          {"root", handler.root},
                          {"features",
                           {{"recursiveReadOnlyMounts", f.recursive_read_only_mounts},
                            {"idmappedMounts", f.idmapped_mounts},
                            {"userNamespaces", false}}}});
    }
    info["runtimeHandlers"] = handlers.dump();
    const pod::CgroupSupport& cgroups = sandboxes_->HostCgroups();
    const std::set<std::string>& controllers =
        cgroups.v2() ? cgroups.v2_controllers : cgroups.v1_controllers;
    info["cgroup"] = nlohmann::json{
        {"driver", config->cgroup_manager},
        {"version", cgroups.v2() ? "v2"
                    : cgroups.mode == pod::CgroupMode::kHybrid ? "v1 (hybrid)"
                                                               : "v1"},
        {"controllers", controllers},
        {"description", cgroups.Describe()}}.dump();
    info["storage"] = nlohmann::json{{"driver", "overlay"},
                                     {"root", config->root},
                                     {"layers", config->root + "/layers"},
                                     {"runRoot", config->run_root}}.dump();
  }
  return grpc::Status::OK;
}

grpc::Status RuntimeService::RuntimeConfig(grpc::ServerContext*,
                                           const runtime::v1::RuntimeConfigRequest*,
                                           runtime::v1::RuntimeConfigResponse* response) {
  bool systemd = config_->Get()->cgroup_manager == "systemd";
  response->mutable_linux()->set_cgroup_driver(systemd ? runtime::v1::CgroupDriver::SYSTEMD
                                                       : runtime::v1::CgroupDriver::CGROUPFS);
  return grpc::Status::OK;
}

grpc::Status RuntimeService::UpdateRuntimeConfig(
    grpc::ServerContext*, const runtime::v1::UpdateRuntimeConfigRequest* request,
    runtime::v1::UpdateRuntimeConfigResponse*) {
  const std::string& cidrs = request->runtime_config().network_config().pod_cidr();
  // One CIDR, or one per family ("10.244.1.0/24,fd00:10:244:1::/64").
  for (absl::string_view cidr : absl::StrSplit(cidrs, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> parts = absl::StrSplit(cidr, absl::MaxSplits('/', 1));
    unsigned char address[sizeof(in6_addr)];
    const bool v4 = ::inet_pton(AF_INET, parts.first.c_str(), address) == 1;
    const bool v6 = !v4 && ::inet_pton(AF_INET6, parts.first.c_str(), address) == 1;
    int prefix = -1;
    if ((!v4 && !v6) || !absl::SimpleAtoi(parts.second, &prefix) || prefix < 0 ||
        prefix > (v4 ? 32 : 128)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("runtime_config.network_config.pod_cidr: \"", cidr,
                                       "\" is not a CIDR"));
    }
  }
  {
    absl::MutexLock lock(&pod_cidr_mu_);
    if (pod_cidr_ == cidrs) return grpc::Status::OK;
    pod_cidr_ = cidrs;
  }
  spdlog::info("kubelet's pod CIDR is \"{}\"; pod addresses come from the CNI configuration",
               cidrs);
  return grpc::Status::OK;
}

}  // namespace berth::cri
