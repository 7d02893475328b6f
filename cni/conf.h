#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace berth::cni {

// One CNI network configuration as read from the config directory, normalised to a list of plugins
// (a single-plugin `.conf`/`.json` becomes a list of one, as libcni does).
struct NetworkConf {
  std::string path;         // the file it came from
  std::string name;         // the network name
  std::string cni_version;  // "0.3.0", "0.3.1", "0.4.0", "1.0.0" or "1.1.0"
  std::vector<std::string> plugin_types;  // the chain, in order
  std::string list_json;    // the conflist as JSON (a .conf wrapped into a one-plugin list)
};

// Reads and checks one file: valid JSON, a name, a supported cniVersion, a non-empty chain where
// every plugin has a type. InvalidArgument naming the file and the problem otherwise.
absl::StatusOr<NetworkConf> LoadNetworkConf(const std::string& path);

// Checks that every plugin of the chain is an executable in one of bin_dirs. NotFound naming the
// missing plugin and the directories searched otherwise.
absl::Status CheckPluginsInstalled(const NetworkConf& conf, const std::vector<std::string>& bin_dirs);

// The network pods get: the one named `default_network` if set, otherwise the first file in
// lexical order (*.conflist, *.conf, *.json) that loads and whose plugins are installed.
// FailedPrecondition saying why when there is none (the reasons of each skipped file included).
absl::StatusOr<NetworkConf> FindDefaultNetwork(const std::string& conf_dir,
                                               const std::vector<std::string>& bin_dirs,
                                               const std::string& default_network);

}  // namespace berth::cni
