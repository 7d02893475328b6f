#include "cni/conf.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace berth::cni {
namespace {

using nlohmann::json;

bool SupportedVersion(const std::string& version) {
  static constexpr const char* kVersions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  return std::find(std::begin(kVersions), std::end(kVersions), version) != std::end(kVersions);
}

bool IsConfFile(const std::string& name) {
  return absl::EndsWith(name, ".conflist") || absl::EndsWith(name, ".conf") ||
         absl::EndsWith(name, ".json");
}

absl::Status Invalid(const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("CNI config ", path, ": ", why));
}

std::string StringField(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    return "";
  }
  return it->get<std::string>();
}

// A single-plugin config becomes a list of one, keeping the plugin's own keys.
json AsList(const json& doc, bool is_list) {
  if (is_list) {
    return doc;
  }
  json list = {{"cniVersion", doc.value("cniVersion", "")}, {"name", doc.value("name", "")}};
  list["plugins"] = json::array({doc});
  return list;
}

absl::StatusOr<std::vector<std::string>> ListConfFiles(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("read CNI config dir ", dir));
  }
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (IsConfFile(name)) {
      names.push_back(name);
    }
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

absl::StatusOr<NetworkConf> LoadNetworkConf(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Invalid(path, "not a JSON object");
  }
  bool is_list = doc.contains("plugins");
  NetworkConf conf;
  conf.path = path;
  conf.name = StringField(doc, "name");
  conf.cni_version = StringField(doc, "cniVersion");
  if (conf.name.empty()) {
    return Invalid(path, "no \"name\"");
  }
  if (!SupportedVersion(conf.cni_version)) {
    return Invalid(path, absl::StrCat("unsupported cniVersion \"", conf.cni_version, "\""));
  }
  json list = AsList(doc, is_list);
  const json& plugins = list["plugins"];
  if (!plugins.is_array() || plugins.empty()) {
    return Invalid(path, "\"plugins\" must be a non-empty list");
  }
  for (size_t i = 0; i < plugins.size(); ++i) {
    std::string type = plugins[i].is_object() ? StringField(plugins[i], "type") : "";
    if (type.empty() || type.find('/') != std::string::npos) {
      return Invalid(path, absl::StrCat("plugin ", i, " has no valid \"type\""));
    }
    conf.plugin_types.push_back(type);
  }
  conf.list_json = list.dump();
  return conf;
}

absl::Status CheckPluginsInstalled(const NetworkConf& conf,
                                   const std::vector<std::string>& bin_dirs) {
  for (const std::string& type : conf.plugin_types) {
    bool found = std::any_of(bin_dirs.begin(), bin_dirs.end(), [&](const std::string& dir) {
      return ::access(absl::StrCat(dir, "/", type).c_str(), X_OK) == 0;
    });
    if (!found) {
      return absl::NotFoundError(absl::StrCat("CNI plugin \"", type, "\" of network \"", conf.name,
                                              "\" not found in ", absl::StrJoin(bin_dirs, ", ")));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<NetworkConf> FindDefaultNetwork(const std::string& conf_dir,
                                               const std::vector<std::string>& bin_dirs,
                                               const std::string& default_network) {
  auto names = ListConfFiles(conf_dir);
  if (!names.ok()) {
    return absl::FailedPreconditionError(std::string(names.status().message()));
  }
  std::vector<std::string> skipped;
  for (const std::string& name : *names) {
    auto conf = LoadNetworkConf(absl::StrCat(conf_dir, "/", name));
    absl::Status status = conf.status();
    if (status.ok() && !default_network.empty() && conf->name != default_network) {
      continue;
    }
    if (status.ok()) {
      status = CheckPluginsInstalled(*conf, bin_dirs);
    }
    if (status.ok()) {
      return conf;
    }
    skipped.push_back(std::string(status.message()));
  }
  std::string what = default_network.empty()
                         ? absl::StrCat("no valid CNI network config in ", conf_dir)
                         : absl::StrCat("CNI network \"", default_network, "\" not found in ",
                                        conf_dir);
  if (!skipped.empty()) {
    absl::StrAppend(&what, " (", absl::StrJoin(skipped, "; "), ")");
  }
  return absl::FailedPreconditionError(what);
}

}  // namespace berth::cni
