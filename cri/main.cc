// berthd: the berth CRI daemon. `berthd` serves; `berthd config` prints the effective configuration;
// `berthd check` checks the node; `berthd version` prints the version.

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "base/logging.h"
#include "base/version.h"
#include "config/loader.h"
#include "cri/daemon.h"
#include "cri/node_check.h"
#include "spdlog/spdlog.h"

namespace {

struct Flags {
  std::string config_file;
  std::string config_dir;
  std::optional<std::string> root, run_root, listen, log_level;
};

void AddConfigFlags(CLI::App& app, Flags& flags) {
  app.add_option("--config", flags.config_file,
                 "configuration file (default /etc/berth/berth.yaml, optional)");
  app.add_option("--config-dir", flags.config_dir,
                 "drop-in directory of *.yaml files (default: berth.d beside the config file)");
  app.add_option("--root", flags.root, "persistent state directory (root)");
  app.add_option("--run-root", flags.run_root, "volatile state directory (run_root)");
  app.add_option("--listen", flags.listen, "CRI unix socket path (listen)");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn or error (log_level)");
}

berth::config::LoadOptions ToLoadOptions(const Flags& flags) {
  berth::config::LoadOptions options;
  if (!flags.config_file.empty()) {
    options.config_file = flags.config_file;
    options.config_file_required = true;
  }
  options.drop_in_dir = flags.config_dir;
  options.root = flags.root;
  options.run_root = flags.run_root;
  options.listen = flags.listen;
  options.log_level = flags.log_level;
  return options;
}

int Fail(absl::string_view message) {
  std::cerr << "berthd: " << message << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  berth::cri::BlockDaemonSignals();

  CLI::App app{"berthd: a Kubernetes container runtime serving the CRI"};
  Flags flags;
  AddConfigFlags(app, flags);
  CLI::App* version_cmd = app.add_subcommand("version", "print the version and exit");
  CLI::App* config_cmd = app.add_subcommand("config", "print the effective configuration as YAML");
  config_cmd->fallthrough();
  CLI::App* check_cmd = app.add_subcommand(
      "check", "check that this node can run berthd as configured, and say what is missing");
  check_cmd->fallthrough();
  app.require_subcommand(0, 1);
  CLI11_PARSE(app, argc, argv);

  if (version_cmd->parsed()) {
    std::cout << berth::kRuntimeName << " version " << berth::kVersion << std::endl;
    return 0;
  }
  berth::config::LoadOptions options = ToLoadOptions(flags);
  absl::StatusOr<berth::config::Config> config = berth::config::Load(options);
  if (!config.ok()) {
    return Fail(config.status().message());
  }
  if (config_cmd->parsed()) {
    std::cout << berth::config::ToYaml(*config);
    return 0;
  }
  if (check_cmd->parsed()) {
    std::string report;
    const int code = berth::cri::PrintFindings(berth::cri::CheckNode(*config), &report);
    std::cout << report;
    return code;
  }

  berth::InitLogging(*berth::ParseLogLevel(config->log_level),
                     *berth::ParseLogFormat(config->log_format));
  berth::cri::Daemon daemon(std::move(options), *std::move(config));
  absl::Status status = daemon.Run();
  if (!status.ok()) {
    spdlog::critical("{}", status.message());
    return 1;
  }
  return 0;
}
