#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"

namespace berth::config {

// Where berthd's configuration comes from: the main file, then the drop-in directory's *.yaml files
// in lexical order (later keys win), then the command-line flags.
struct LoadOptions {
  std::string config_file = "/etc/berth/berth.yaml";
  bool config_file_required = false;  // true when given with --config
  std::string drop_in_dir;            // "" = berth.d beside config_file
  std::optional<std::string> root;
  std::optional<std::string> run_root;
  std::optional<std::string> listen;
  std::optional<std::string> log_level;
};

// Where each key was last set, "file:line:col" or "--flag", keyed by its dotted path
// ("images.registries[0].prefix"). Lets validation errors point at the line to fix.
using Origins = std::map<std::string, std::string>;

// Reads and validates the configuration. InvalidArgument names the file, line and key of the first
// problem; NotFound if a required config file is missing.
absl::StatusOr<Config> Load(const LoadOptions& options);

// Merges one YAML document into `config`. Scalars replace, lists replace, `runtimes` merges per
// handler (a null handler removes it). Unknown keys, wrong types and impossible values are
// InvalidArgument "<source>:<line>:<col>: <key>: <problem>"; on error `config` may be partly changed.
absl::Status ApplyYaml(absl::string_view yaml, absl::string_view source, Config& config,
                       Origins* origins = nullptr);

// Checks what single keys cannot: cross-field rules and required fields. Messages name the key and,
// when `origins` knows it, where it was set.
absl::Status Validate(const Config& config, const Origins* origins = nullptr);

// The configuration as YAML in the layout of contrib/berth.yaml (what `berthd config` prints), and
// as JSON (what verbose Status shows). ApplyYaml(ToYaml(c)) over defaults gives back c.
std::string ToYaml(const Config& config);
std::string ToJson(const Config& config);

// Durations as operators write them: "4h", "90s", "1h30m". Whole seconds, at least one.
absl::StatusOr<std::chrono::seconds> ParseDuration(absl::string_view text);
std::string FormatDuration(std::chrono::seconds duration);

}  // namespace berth::config
