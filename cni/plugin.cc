#include "cni/plugin.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/process.h"
#include "base/status_macros.h"
#include "cni/netns.h"
#include "nlohmann/json.hpp"

namespace berth::cni {
namespace {

using nlohmann::json;

struct Call {
  std::string command;  // ADD, DEL, CHECK
  const json* list;     // the conflist
  json prev_result;     // null when none
};

std::string FindPlugin(const std::vector<std::string>& bin_dirs, const std::string& type) {
  if (type.empty() || absl::StrContains(type, '/')) return "";
  for (const std::string& dir : bin_dirs) {
    const std::string path = absl::StrCat(dir, "/", type);
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// The capability arguments a plugin asked for in its "capabilities" map.
json RuntimeConfig(const json& plugin, const AttachSpec& spec) {
  json rc = json::object();
  auto caps = plugin.find("capabilities");
  if (caps == plugin.end() || !caps->is_object()) return rc;
  if (caps->value("portMappings", false) && !spec.port_mappings.empty()) {
    json mappings = json::array();
    for (const PortMapping& m : spec.port_mappings) {
      json one = {{"hostPort", m.host_port}, {"containerPort", m.container_port},
                  {"protocol", m.protocol}};
      if (!m.host_ip.empty()) one["hostIP"] = m.host_ip;
      mappings.push_back(one);
    }
    rc["portMappings"] = mappings;
  }
  if (caps->value("dns", false) && spec.dns) {
    rc["dns"] = {{"servers", spec.dns->servers},
                 {"searches", spec.dns->searches},
                 {"options", spec.dns->options}};
  }
  return rc;
}

// What DEL needs to undo an ADD: the config list, the result (null while the ADD is under way)
// and the arguments it was called with.
json CacheEntry(const AttachSpec& spec, const std::string& network, const json& list,
                const json& result) {
  json args = json::array();
  for (const auto& [k, v] : spec.args) args.push_back({k, v});
  json mappings = json::array();
  for (const PortMapping& m : spec.port_mappings) {
    mappings.push_back({{"hostPort", m.host_port}, {"containerPort", m.container_port},
                        {"protocol", m.protocol}, {"hostIP", m.host_ip}});
  }
  return {{"kind", "cniCacheV1"},   {"containerId", spec.container_id},
          {"ifName", spec.ifname},   {"networkName", network},
          {"netns", spec.netns_path}, {"config", list},
          {"result", result},        {"cniArgs", args},
          {"portMappings", mappings}};
}

bool AtLeast040(const std::string& version) {
  return !(version.rfind("0.1", 0) == 0 || version.rfind("0.2", 0) == 0 ||
           version.rfind("0.3", 0) == 0);
}

}  // namespace

absl::StatusOr<std::vector<IpConfig>> ParseResultIps(const std::string& result_json) {
  json j = json::parse(result_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("CNI result is not a JSON object");
  }
  std::vector<IpConfig> ips;
  if (auto list = j.find("ips"); list != j.end() && list->is_array()) {
    for (const json& ip : *list) {
      if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) {
        return absl::InvalidArgumentError("CNI result: an ips entry without address");
      }
      IpConfig config;
      config.address = ip["address"].get<std::string>();
      config.gateway = ip.value("gateway", "");
      config.ipv6 = absl::StrContains(config.address, ':');
      ips.push_back(std::move(config));
    }
  }
  return ips;
}

std::string CniExecPlugin::CachePath(const std::string& container_id,
                                     const std::string& ifname) const {
  return absl::StrCat(options_.cache_dir, "/", container_id, "-", ifname, ".json");
}

// Whether plugin `index` of a chain is done in-process rather than by running it: a loopback
// plugin after the first only sets lo up (BringUpLoopback, for ADD) and passes its prevResult on;
// DEL sets lo down in a namespace that is about to go, CHECK looks at lo. Saves starting a Go
// binary, ~18 ms, on every pod start and stop. A loopback plugin first in the chain makes the
// result the rest build on, so it runs.
static bool DoneInProcess(const json& list, size_t index) {
  return index > 0 && list["plugins"][index].value("type", "") == "loopback";
}

// Runs one plugin of the chain. On failure: the plugin's error message, details and stderr.
static absl::StatusOr<std::string> InvokeOnce(const CniExecPlugin::Options& options,
                                              const Call& call, const json& plugin,
                                              const AttachSpec& spec);

static absl::StatusOr<std::string> Invoke(const CniExecPlugin::Options& options, const Call& call,
                                          const json& plugin, const AttachSpec& spec) {
  absl::StatusOr<std::string> out = InvokeOnce(options, call, plugin, spec);
  if (!out.ok() && options.on_error) options.on_error(call.command, plugin.value("type", ""));
  return out;
}

static absl::StatusOr<std::string> InvokeOnce(const CniExecPlugin::Options& options,
                                              const Call& call, const json& plugin,
                                              const AttachSpec& spec) {
  const std::string type = plugin.value("type", "");
  const std::string binary = FindPlugin(options.bin_dirs, type);
  if (binary.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CNI plugin \"", type, "\" not found in ", absl::StrJoin(options.bin_dirs, ":")));
  }
  json conf = plugin;
  conf["name"] = call.list->value("name", "");
  conf["cniVersion"] = call.list->value("cniVersion", "");
  if (!call.prev_result.is_null()) conf["prevResult"] = call.prev_result;
  json rc = RuntimeConfig(plugin, spec);
  if (!rc.empty()) conf["runtimeConfig"] = rc;
  std::vector<std::string> args = {"IgnoreUnknown=1"};
  for (const auto& [k, v] : spec.args) args.push_back(absl::StrCat(k, "=", v));
  ProcessSpec process;
  process.argv = {binary};
  process.env = {"CNI_COMMAND=" + call.command,
                 "CNI_CONTAINERID=" + spec.container_id,
                 "CNI_NETNS=" + spec.netns_path,
                 "CNI_IFNAME=" + spec.ifname,
                 "CNI_ARGS=" + absl::StrJoin(args, ";"),
                 "CNI_PATH=" + absl::StrJoin(options.bin_dirs, ":"),
                 "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  process.stdin_data = conf.dump();
  process.timeout = options.timeout;
  process.nice = kHelperNice;
  absl::StatusOr<ProcessResult> r = RunProcess(process);
  const std::string what = absl::StrCat("CNI ", call.command, " ", type);
  if (!r.ok()) return Annotate(r.status(), what);
  if (r->exit_code != 0) {
    json error = json::parse(r->stdout_data, nullptr, false);
    std::string message = absl::StrCat(what, " failed (exit ", r->exit_code, ")");
    if (error.is_object()) {
      absl::StrAppend(&message, ": ", error.value("msg", ""));
      if (!error.value("details", "").empty()) absl::StrAppend(&message, ": ", error["details"].get<std::string>());
      if (error.contains("code")) absl::StrAppend(&message, " (code ", error["code"].dump(), ")");
    } else if (!r->stdout_data.empty()) {
      absl::StrAppend(&message, ": ", Tail(r->stdout_data, 512));
    }
    if (!r->stderr_data.empty()) absl::StrAppend(&message, "; stderr: ", Tail(r->stderr_data));
    return absl::InternalError(message);
  }
  return r->stdout_data;
}

absl::StatusOr<Attachment> CniExecPlugin::Attach(const NetworkConf& network,
                                                 const AttachSpec& spec) {
  json list = json::parse(network.list_json, nullptr, false);
  if (!list.is_object() || !list.contains("plugins")) {
    return absl::InvalidArgumentError(absl::StrCat("CNI config ", network.path, " is not a list"));
  }
  Call call{"ADD", &list, nullptr};
  // Cached before the first plugin runs: a berthd killed in the middle of the chain finds what
  // to DEL at its next start.
  const std::string cache_path = CachePath(spec.container_id, spec.ifname);
  RETURN_IF_ERROR(MakeDirs(options_.cache_dir, 0700));
  RETURN_IF_ERROR(
      WriteFileAtomic(cache_path, CacheEntry(spec, network.name, list, nullptr).dump(), 0600));
  std::string result;
  const json& plugins = list["plugins"];
  for (size_t i = 0; i < plugins.size(); ++i) {
    const json& plugin = plugins[i];
    absl::StatusOr<std::string> out;
    if (DoneInProcess(list, i)) {
      absl::Status up = BringUpLoopback(spec.netns_path);
      out = up.ok() ? absl::StatusOr<std::string>(result) : Annotate(up, "CNI ADD loopback");
      if (!up.ok() && options_.on_error) options_.on_error("ADD", "loopback");
    } else {
      out = Invoke(options_, call, plugin, spec);
    }
    if (!out.ok()) {
      // Whatever the plugins before it did (an IP reserved, a veth made) is undone.
      Call del{"DEL", &list, AtLeast040(network.cni_version) ? call.prev_result : json()};
      for (size_t j = plugins.size(); j-- > 0;) {
        if (DoneInProcess(list, j)) continue;
        absl::StatusOr<std::string> undone = Invoke(options_, del, plugins[j], spec);
        if (!undone.ok()) spdlog::warn("undo of a failed CNI ADD: {}", undone.status().message());
      }
      ::unlink(cache_path.c_str());
      return Annotate(out.status(), absl::StrCat("network ", network.name));
    }
    json parsed = json::parse(*out, nullptr, false);
    if (!parsed.is_object()) {
      if (options_.on_error) options_.on_error("ADD", plugin.value("type", ""));
      return absl::InternalError(absl::StrCat("network ", network.name, ": CNI ADD ",
                                              plugin.value("type", ""), " printed no result"));
    }
    call.prev_result = parsed;
    result = *out;
  }
  Attachment attachment;
  attachment.network = network.name;
  attachment.result_json = result;
  ASSIGN_OR_RETURN(attachment.ips, ParseResultIps(result));
  RETURN_IF_ERROR(WriteFileAtomic(
      cache_path, CacheEntry(spec, network.name, list, call.prev_result).dump(), 0600));
  return attachment;
}

absl::Status CniExecPlugin::Detach(const AttachSpec& spec) {
  const std::string path = CachePath(spec.container_id, spec.ifname);
  absl::StatusOr<std::string> text = ReadFile(path);
  if (absl::IsNotFound(text.status())) return absl::OkStatus();
  RETURN_IF_ERROR(text.status());
  json cache = json::parse(*text, nullptr, false);
  if (!cache.is_object() || !cache.contains("config")) {
    return absl::InternalError(absl::StrCat("CNI cache ", path, " is corrupt"));
  }
  const json& list = cache["config"];
  Call call{"DEL", &list, AtLeast040(list.value("cniVersion", "")) ? cache["result"] : json()};
  // A namespace no longer pinned there (unmounted under berthd, or gone with a reboot) is
  // passed as none, as the spec allows for DEL and containerd does: the plugins still release
  // what is theirs outside it (addresses, rules) instead of failing on a path that is not a
  // namespace, which would keep the pod from ever being stopped.
  AttachSpec del = spec;
  if (!del.netns_path.empty() && !IsNetNs(del.netns_path)) {
    spdlog::info("CNI DEL for {}: {} is not a network namespace any more; passing none",
                 spec.container_id, del.netns_path);
    del.netns_path.clear();
  }
  for (size_t j = list["plugins"].size(); j-- > 0;) {
    if (DoneInProcess(list, j)) continue;
    absl::StatusOr<std::string> out = Invoke(options_, call, list["plugins"][j], del);
    if (!out.ok()) return Annotate(out.status(), absl::StrCat("network ", list.value("name", "")));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(absl::StrCat("remove ", path));
  }
  return absl::OkStatus();
}

absl::Status CniExecPlugin::Check(const AttachSpec& spec) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(CachePath(spec.container_id, spec.ifname)));
  json cache = json::parse(text, nullptr, false);
  if (!cache.is_object()) return absl::InternalError("CNI cache is corrupt");
  const json& list = cache["config"];
  if (!AtLeast040(list.value("cniVersion", ""))) return absl::OkStatus();  // no CHECK before 0.4.0
  Call call{"CHECK", &list, cache["result"]};
  for (size_t i = 0; i < list["plugins"].size(); ++i) {
    if (DoneInProcess(list, i)) continue;
    absl::StatusOr<std::string> out = Invoke(options_, call, list["plugins"][i], spec);
    if (!out.ok()) return Annotate(out.status(), absl::StrCat("network ", list.value("name", "")));
  }
  return absl::OkStatus();
}

absl::StatusOr<Attachment> CniExecPlugin::Cached(const std::string& container_id,
                                                 const std::string& ifname) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(CachePath(container_id, ifname)));
  json cache = json::parse(text, nullptr, false);
  if (!cache.is_object()) return absl::InternalError("CNI cache is corrupt");
  Attachment attachment;
  attachment.network = cache.value("networkName", "");
  attachment.result_json = cache["result"].dump();
  ASSIGN_OR_RETURN(attachment.ips, ParseResultIps(attachment.result_json));
  return attachment;
}

std::vector<AttachSpec> CniExecPlugin::CachedAttachments() {
  std::vector<AttachSpec> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.cache_dir, ec)) {
    if (entry.path().extension() != ".json") continue;
    absl::StatusOr<std::string> text = ReadFile(entry.path().string());
    json cache = text.ok() ? json::parse(*text, nullptr, false) : json();
    if (!cache.is_object() || !cache.value("containerId", json()).is_string() ||
        !cache.value("ifName", json()).is_string()) {
      spdlog::warn("CNI cache {} is unreadable, skipped", entry.path().string());
      continue;
    }
    AttachSpec spec;
    spec.container_id = cache["containerId"].get<std::string>();
    spec.ifname = cache["ifName"].get<std::string>();
    if (cache.value("netns", json()).is_string()) spec.netns_path = cache["netns"].get<std::string>();
    for (const json& arg : cache.value("cniArgs", json::array())) {
      if (arg.is_array() && arg.size() == 2 && arg[0].is_string() && arg[1].is_string()) {
        spec.args.emplace_back(arg[0].get<std::string>(), arg[1].get<std::string>());
      }
    }
    for (const json& m : cache.value("portMappings", json::array())) {
      if (!m.is_object()) continue;
      spec.port_mappings.push_back({.protocol = m.value("protocol", "tcp"),
                                    .container_port = m.value("containerPort", 0),
                                    .host_port = m.value("hostPort", 0),
                                    .host_ip = m.value("hostIP", "")});
    }
    out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace berth::cni
