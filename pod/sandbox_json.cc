// Sandboxes as JSON: how they are persisted in berth.db.

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pod/sandbox.h"

namespace berth::pod {

using nlohmann::json;

std::string Sandbox::Key() const {
  return absl::StrCat(spec.name, "_", spec.namespace_name, "_", spec.uid, "_", spec.attempt);
}

std::string SandboxToJson(const Sandbox& s) {
  json ports = json::array();
  for (const cni::PortMapping& p : s.spec.port_mappings) {
    ports.push_back({{"protocol", p.protocol}, {"container_port", p.container_port},
                     {"host_port", p.host_port}, {"host_ip", p.host_ip}});
  }
  json ips = json::array();
  for (const cni::IpConfig& ip : s.ips) {
    ips.push_back({{"address", ip.address}, {"gateway", ip.gateway}, {"ipv6", ip.ipv6}});
  }
  json spec = {{"name", s.spec.name}, {"uid", s.spec.uid},
               {"namespace", s.spec.namespace_name}, {"attempt", s.spec.attempt},
               {"hostname", s.spec.hostname}, {"log_directory", s.spec.log_directory},
               {"port_mappings", ports}, {"labels", s.spec.labels},
               {"annotations", s.spec.annotations}, {"cgroup_parent", s.spec.cgroup_parent},
               {"host_network", s.spec.host_network}, {"host_ipc", s.spec.host_ipc},
               {"pid_mode", static_cast<int>(s.spec.pid_mode)}, {"sysctls", s.spec.sysctls},
               {"runtime_handler", s.spec.runtime_handler}};
  if (s.spec.resources) spec["resources"] = *s.spec.resources;
  if (s.spec.overhead) spec["overhead"] = *s.spec.overhead;
  if (s.spec.dns) {
    spec["dns"] = {{"servers", s.spec.dns->servers}, {"searches", s.spec.dns->searches},
                   {"options", s.spec.dns->options}};
  }
  return json{{"id", s.id},
              {"spec", spec},
              {"state", s.state == Sandbox::State::kReady ? "ready" : "notready"},
              {"stopped", s.stopped},
              {"created_at_ns", s.created_at_ns},
              {"runtime_handler", s.runtime_handler},
              {"netns_path", s.netns_path},
              {"ips", ips},
              {"cni_result", s.cni_result},
              {"pid", s.pid},
              {"oci_spec", s.oci_spec},
              {"pause_layers", s.pause_layers}}
      .dump();
}

absl::StatusOr<Sandbox> SandboxFromJson(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("spec")) {
    return absl::InternalError("sandbox record is not valid JSON");
  }
  try {
    Sandbox s;
    const json& spec = j["spec"];
    s.id = j.at("id");
    s.spec.name = spec.at("name");
    s.spec.uid = spec.at("uid");
    s.spec.namespace_name = spec.at("namespace");
    s.spec.attempt = spec.at("attempt");
    s.spec.hostname = spec.at("hostname");
    s.spec.log_directory = spec.at("log_directory");
    for (const json& p : spec.at("port_mappings")) {
      s.spec.port_mappings.push_back(
          {p.at("protocol"), p.at("container_port"), p.at("host_port"), p.at("host_ip")});
    }
    s.spec.labels = spec.at("labels").get<std::map<std::string, std::string>>();
    s.spec.annotations = spec.at("annotations").get<std::map<std::string, std::string>>();
    s.spec.cgroup_parent = spec.at("cgroup_parent");
    s.spec.host_network = spec.at("host_network");
    s.spec.host_ipc = spec.at("host_ipc");
    s.spec.pid_mode = static_cast<NamespaceMode>(spec.at("pid_mode").get<int>());
    s.spec.sysctls = spec.at("sysctls").get<std::map<std::string, std::string>>();
    s.spec.runtime_handler = spec.at("runtime_handler");
    if (spec.contains("resources")) s.spec.resources = spec["resources"].get<ResourcesSpec>();
    if (spec.contains("overhead")) s.spec.overhead = spec["overhead"].get<ResourcesSpec>();
    if (spec.contains("dns")) {
      s.spec.dns = DnsSettings{spec["dns"].at("servers"), spec["dns"].at("searches"),
                               spec["dns"].at("options")};
    }
    s.state = j.at("state") == "ready" ? Sandbox::State::kReady : Sandbox::State::kNotReady;
    s.stopped = j.value("stopped", false);
    s.created_at_ns = j.at("created_at_ns");
    s.runtime_handler = j.at("runtime_handler");
    s.netns_path = j.at("netns_path");
    for (const json& ip : j.at("ips")) {
      s.ips.push_back({ip.at("address"), ip.at("gateway"), ip.at("ipv6")});
    }
    s.cni_result = j.at("cni_result");
    s.pid = j.at("pid");
    s.oci_spec = j.at("oci_spec");
    s.pause_layers = j.value("pause_layers", std::vector<std::string>());
    return s;
  } catch (const json::exception& e) {
    return absl::InternalError(absl::StrCat("sandbox record: ", e.what()));
  }
}

}  // namespace berth::pod
