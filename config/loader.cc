#include "config/loader.h"

#include <dirent.h>

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/errno_status.h"
#include "base/file_util.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace berth::config {
namespace {

bool IsAbsolute(absl::string_view path) { return !path.empty() && path.front() == '/'; }

// The offset of the first byte of `text` that is not part of well-formed UTF-8 (no overlong
// forms, no surrogates, at most U+10FFFF), or npos.
size_t InvalidUtf8At(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return i;
    }
    if (text.size() - i <= n) return i;
    for (size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(text[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return i;
    }
    i += n + 1;
  }
  return absl::string_view::npos;
}

bool IsHandlerName(absl::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// Checks "host:port" (host may be "[v6]"); port 1..65535.
absl::Status CheckHostPort(absl::string_view address) {
  size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", address, "' is not host:port"));
  }
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", address, "' has no valid port (1-65535)"));
  }
  return absl::OkStatus();
}

// Walks one YAML document, applying each key to the Config and checking single values as it goes,
// so that every error carries the position of the node at fault.
class YamlApplier {
 public:
  YamlApplier(absl::string_view source, Origins* origins) : source_(source), origins_(origins) {}

  absl::Status Apply(const YAML::Node& root, Config& c) {
    if (root.IsNull()) return absl::OkStatus();  // an empty file changes nothing
    return Map(root, "", {
        {"root", [&](const YAML::Node& n, const std::string& k) { return AbsPath(n, k, c.root); }},
        {"run_root",
         [&](const YAML::Node& n, const std::string& k) { return AbsPath(n, k, c.run_root); }},
        {"listen",
         [&](const YAML::Node& n, const std::string& k) { return AbsPath(n, k, c.listen); }},
        {"log_level",
         [&](const YAML::Node& n, const std::string& k) {
           RETURN_IF_ERROR(String(n, k, c.log_level));
           if (!ParseLogLevel(c.log_level).ok()) {
             return Error(n, k, absl::StrCat("'", c.log_level,
                                             "' is not one of trace, debug, info, warn, error"));
           }
           return absl::OkStatus();
         }},
        {"log_format",
         [&](const YAML::Node& n, const std::string& k) {
           RETURN_IF_ERROR(String(n, k, c.log_format));
           if (!ParseLogFormat(c.log_format).ok()) {
             return Error(n, k, absl::StrCat("'", c.log_format, "' is not one of text, json"));
           }
           return absl::OkStatus();
         }},
        {"cgroup_manager",
         [&](const YAML::Node& n, const std::string& k) {
           RETURN_IF_ERROR(String(n, k, c.cgroup_manager));
           if (c.cgroup_manager != "cgroupfs" && c.cgroup_manager != "systemd") {
             return Error(n, k, absl::StrCat("'", c.cgroup_manager,
                                             "' is not one of cgroupfs, systemd"));
           }
           return absl::OkStatus();
         }},
        {"default_runtime",
         [&](const YAML::Node& n, const std::string& k) {
           return String(n, k, c.default_runtime);
         }},
        {"runtimes", [&](const YAML::Node& n, const std::string& k) { return Runtimes(n, k, c); }},
        {"monitor", [&](const YAML::Node& n, const std::string& k) { return Monitor(n, k, c); }},
        {"pause",
         [&](const YAML::Node& n, const std::string& k) {
           return Map(n, k, {{"image", [&](const YAML::Node& v, const std::string& vk) {
                                return String(v, vk, c.pause.image);
                              }}});
         }},
        {"network", [&](const YAML::Node& n, const std::string& k) { return Network(n, k, c); }},
        {"images", [&](const YAML::Node& n, const std::string& k) { return Images(n, k, c); }},
        {"streaming",
         [&](const YAML::Node& n, const std::string& k) { return Streaming(n, k, c); }},
        {"metrics", [&](const YAML::Node& n, const std::string& k) { return Metrics(n, k, c); }},
    });
  }

 private:
  using Handler = std::function<absl::Status(const YAML::Node&, const std::string&)>;

  std::string Where(const YAML::Node& n) const {
    const YAML::Mark mark = n.Mark();
    if (mark.is_null()) return std::string(source_);
    return absl::StrCat(source_, ":", mark.line + 1, ":", mark.column + 1);
  }

  absl::Status Error(const YAML::Node& n, absl::string_view key, absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(Where(n), ": ", key, ": ", problem));
  }

  void Record(const YAML::Node& n, const std::string& key) {
    if (origins_ != nullptr) (*origins_)[key] = Where(n);
  }

  static std::string Join(const std::string& parent, absl::string_view key) {
    return parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
  }

  // Dispatches each key of a mapping to its handler; unknown and repeated keys are errors.
  absl::Status Map(const YAML::Node& n, const std::string& key,
                   const std::map<std::string, Handler, std::less<>>& handlers) {
    if (!n.IsMap()) {
      return Error(n, key.empty() ? "(top level)" : key, "expected a mapping");
    }
    std::set<std::string> seen;
    for (const auto& entry : n) {
      const YAML::Node& k = entry.first;
      if (!k.IsScalar()) return Error(k, key.empty() ? "(top level)" : key, "keys must be strings");
      const std::string name = k.Scalar();
      const std::string path = Join(key, name);
      auto it = handlers.find(name);
      if (it == handlers.end()) {
        std::vector<std::string> known;
        for (const auto& [known_name, handler] : handlers) known.push_back(known_name);
        return Error(k, path,
                     absl::StrCat("unknown key (known here: ", absl::StrJoin(known, ", "), ")"));
      }
      if (!seen.insert(name).second) return Error(k, path, "key given twice");
      RETURN_IF_ERROR(it->second(entry.second, path));
    }
    return absl::OkStatus();
  }

  absl::Status String(const YAML::Node& n, const std::string& key, std::string& out) {
    if (n.IsNull()) {
      out.clear();
    } else if (n.IsScalar()) {
      out = n.Scalar();
    } else {
      return Error(n, key, "expected a string");
    }
    Record(n, key);
    return absl::OkStatus();
  }

  absl::Status AbsPath(const YAML::Node& n, const std::string& key, std::string& out,
                       bool empty_ok = false) {
    std::string value;
    RETURN_IF_ERROR(String(n, key, value));
    if (value.empty() ? !empty_ok : !IsAbsolute(value)) {
      return Error(n, key,
                   absl::StrCat("'", value, "' is not an absolute path",
                                empty_ok ? " (or empty)" : ""));
    }
    out = std::move(value);
    return absl::OkStatus();
  }

  absl::Status Int(const YAML::Node& n, const std::string& key, int64_t& out) {
    int64_t value = 0;
    if (!n.IsScalar() || !absl::SimpleAtoi(n.Scalar(), &value)) {
      return Error(n, key,
                   n.IsScalar() ? absl::StrCat("expected an integer, got '", n.Scalar(), "'")
                                : "expected an integer");
    }
    out = value;
    Record(n, key);
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status IntIn(const YAML::Node& n, const std::string& key, int64_t low, int64_t high,
                     T& out) {
    int64_t value = 0;
    RETURN_IF_ERROR(Int(n, key, value));
    if (value < low || value > high) {
      return Error(n, key,
                   high == std::numeric_limits<int64_t>::max()
                       ? absl::StrCat(value, " is out of range: at least ", low)
                       : absl::StrCat(value, " is out of range ", low, "..", high));
    }
    out = static_cast<T>(value);
    return absl::OkStatus();
  }

  // A duration such as 30s, 4h or 1h30m; with `zero_ok`, 0 too (meaning none).
  absl::Status Duration(const YAML::Node& n, const std::string& key, std::chrono::seconds& out,
                        bool zero_ok) {
    if (!n.IsScalar()) return Error(n, key, "expected a duration such as 4h or 30m");
    if (zero_ok && (n.Scalar() == "0" || n.Scalar() == "0s")) {
      out = std::chrono::seconds(0);
    } else {
      absl::StatusOr<std::chrono::seconds> d = ParseDuration(n.Scalar());
      if (!d.ok()) return Error(n, key, d.status().message());
      out = *d;
    }
    Record(n, key);
    return absl::OkStatus();
  }

  absl::Status Bool(const YAML::Node& n, const std::string& key, bool& out) {
    if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) {
      out = n.Scalar() == "true";
      Record(n, key);
      return absl::OkStatus();
    }
    return Error(n, key, "expected true or false");
  }

  absl::Status Strings(const YAML::Node& n, const std::string& key, std::vector<std::string>& out,
                       const std::function<absl::Status(const YAML::Node&, const std::string&,
                                                        const std::string&)>& check = nullptr) {
    if (n.IsNull()) {
      out.clear();
      Record(n, key);
      return absl::OkStatus();
    }
    if (!n.IsSequence()) return Error(n, key, "expected a list of strings");
    std::vector<std::string> values;
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string item_key = absl::StrCat(key, "[", i, "]");
      if (!item.IsScalar()) return Error(item, item_key, "expected a string");
      if (check) RETURN_IF_ERROR(check(item, item_key, item.Scalar()));
      values.push_back(item.Scalar());
    }
    out = std::move(values);
    Record(n, key);
    return absl::OkStatus();
  }

  absl::Status Runtimes(const YAML::Node& n, const std::string& key, Config& c) {
    if (!n.IsMap()) return Error(n, key, "expected a mapping of handler name to {path, root}");
    for (const auto& entry : n) {
      const std::string name = entry.first.Scalar();
      const std::string path = Join(key, name);
      if (!IsHandlerName(name)) {
        return Error(entry.first, path,
                     "a runtime handler name uses only letters, digits, '_', '.' and '-'");
      }
      if (entry.second.IsNull()) {  // `crun: ~` removes a handler
        c.runtimes.erase(name);
        Record(entry.second, path);
        continue;
      }
      RuntimeHandler& handler = c.runtimes[name];
      Record(entry.second, path);
      RETURN_IF_ERROR(Map(entry.second, path, {
          {"path", [&](const YAML::Node& v, const std::string& k) {
             return AbsPath(v, k, handler.path);
           }},
          {"root", [&](const YAML::Node& v, const std::string& k) {
             return AbsPath(v, k, handler.root);
           }},
          {"allowed_annotations", [&](const YAML::Node& v, const std::string& k) {
             return Strings(v, k, handler.allowed_annotations,
                            [&](const YAML::Node& item, const std::string& item_key,
                                const std::string& value) {
                              return value.empty() ? Error(item, item_key, "must not be empty")
                                                   : absl::OkStatus();
                            });
           }},
      }));
    }
    return absl::OkStatus();
  }

  absl::Status Monitor(const YAML::Node& n, const std::string& key, Config& c) {
    return Map(n, key, {
        {"path", [&](const YAML::Node& v, const std::string& k) {
           return AbsPath(v, k, c.monitor.path, /*empty_ok=*/true);
         }},
        {"log_size_max", [&](const YAML::Node& v, const std::string& k) {
           int64_t value = 0;
           RETURN_IF_ERROR(Int(v, k, value));
           if (value != -1 && value < 8192) {
             return Error(v, k, absl::StrCat(value, " must be -1 (unlimited) or at least 8192"));
           }
           c.monitor.log_size_max = value;
           return absl::OkStatus();
         }},
        {"exec_sync_output_max", [&](const YAML::Node& v, const std::string& k) {
           return IntIn(v, k, 4096, int64_t{1} << 30, c.monitor.exec_sync_output_max);
         }},
        {"mode", [&](const YAML::Node& v, const std::string& k) {
           RETURN_IF_ERROR(String(v, k, c.monitor.mode));
           if (c.monitor.mode != "auto" && c.monitor.mode != "pod" &&
               c.monitor.mode != "container") {
             return Error(v, k, absl::StrCat("'", c.monitor.mode,
                                             "' is not one of auto, pod, container"));
           }
           return absl::OkStatus();
         }},
        {"exec_sync", [&](const YAML::Node& v, const std::string& k) {
           RETURN_IF_ERROR(String(v, k, c.monitor.exec_sync));
           if (c.monitor.exec_sync != "berth" && c.monitor.exec_sync != "runtime") {
             return Error(v, k, absl::StrCat("'", c.monitor.exec_sync,
                                             "' is not one of berth, runtime"));
           }
           return absl::OkStatus();
         }},
    });
  }

  absl::Status Network(const YAML::Node& n, const std::string& key, Config& c) {
    return Map(n, key, {
        {"conf_dir", [&](const YAML::Node& v, const std::string& k) {
           return AbsPath(v, k, c.network.conf_dir);
         }},
        {"bin_dirs", [&](const YAML::Node& v, const std::string& k) {
           RETURN_IF_ERROR(Strings(v, k, c.network.bin_dirs,
                                   [&](const YAML::Node& item, const std::string& item_key,
                                       const std::string& value) {
                                     return IsAbsolute(value)
                                                ? absl::OkStatus()
                                                : Error(item, item_key,
                                                        absl::StrCat("'", value,
                                                                     "' is not an absolute path"));
                                   }));
           if (c.network.bin_dirs.empty()) return Error(v, k, "needs at least one directory");
           return absl::OkStatus();
         }},
        {"default_network", [&](const YAML::Node& v, const std::string& k) {
           return String(v, k, c.network.default_network);
         }},
    });
  }

  absl::Status Mirror(const YAML::Node& n, const std::string& key, RegistryMirror& mirror) {
    RETURN_IF_ERROR(Map(n, key, {
        {"location", [&](const YAML::Node& v, const std::string& k) {
           return String(v, k, mirror.location);
         }},
        {"insecure", [&](const YAML::Node& v, const std::string& k) {
           return Bool(v, k, mirror.insecure);
         }},
    }));
    if (mirror.location.empty()) return Error(n, Join(key, "location"), "is required");
    return absl::OkStatus();
  }

  absl::Status Registry(const YAML::Node& n, const std::string& key, RegistryConfig& registry) {
    RETURN_IF_ERROR(Map(n, key, {
        {"prefix", [&](const YAML::Node& v, const std::string& k) {
           return String(v, k, registry.prefix);
         }},
        {"location", [&](const YAML::Node& v, const std::string& k) {
           return String(v, k, registry.location);
         }},
        {"insecure", [&](const YAML::Node& v, const std::string& k) {
           return Bool(v, k, registry.insecure);
         }},
        {"mirrors", [&](const YAML::Node& v, const std::string& k) {
           if (!v.IsSequence()) return Error(v, k, "expected a list of {location, insecure}");
           registry.mirrors.clear();
           for (size_t i = 0; i < v.size(); ++i) {
             RETURN_IF_ERROR(Mirror(v[i], absl::StrCat(k, "[", i, "]"),
                                    registry.mirrors.emplace_back()));
           }
           Record(v, k);
           return absl::OkStatus();
         }},
    }));
    if (registry.prefix.empty()) return Error(n, Join(key, "prefix"), "is required");
    if (!registry.location.empty() && !registry.mirrors.empty()) {
      return Error(n, key,
                   "give either location (rewrite) or mirrors (tried first), not both");
    }
    return absl::OkStatus();
  }

  absl::Status Images(const YAML::Node& n, const std::string& key, Config& c) {
    return Map(n, key, {
        {"registries", [&](const YAML::Node& v, const std::string& k) {
           if (v.IsNull()) {
             c.images.registries.clear();
             return absl::OkStatus();
           }
           if (!v.IsSequence()) return Error(v, k, "expected a list of registry settings");
           std::vector<RegistryConfig> registries;
           std::map<std::string, size_t> prefixes;
           for (size_t i = 0; i < v.size(); ++i) {
             const std::string item_key = absl::StrCat(k, "[", i, "]");
             RegistryConfig& registry = registries.emplace_back();
             RETURN_IF_ERROR(Registry(v[i], item_key, registry));
             auto [it, inserted] = prefixes.emplace(registry.prefix, i);
             if (!inserted) {
               return Error(v[i], Join(item_key, "prefix"),
                            absl::StrCat("'", registry.prefix, "' is already configured by ", k,
                                         "[", it->second, "]"));
             }
           }
           c.images.registries = std::move(registries);
           Record(v, k);
           return absl::OkStatus();
         }},
        {"auth_file", [&](const YAML::Node& v, const std::string& k) {
           return AbsPath(v, k, c.images.auth_file, /*empty_ok=*/true);
         }},
        {"parallel_downloads", [&](const YAML::Node& v, const std::string& k) {
           return IntIn(v, k, 1, 64, c.images.parallel_downloads);
         }},
        {"max_layer_size", [&](const YAML::Node& v, const std::string& k) {
           return IntIn(v, k, 1, std::numeric_limits<int64_t>::max(), c.images.max_layer_size);
         }},
        {"max_image_size", [&](const YAML::Node& v, const std::string& k) {
           return IntIn(v, k, 1, std::numeric_limits<int64_t>::max(), c.images.max_image_size);
         }},
        {"max_layer_entries", [&](const YAML::Node& v, const std::string& k) {
           return IntIn(v, k, 1, std::numeric_limits<int64_t>::max(), c.images.max_layer_entries);
         }},
        {"max_path_depth", [&](const YAML::Node& v, const std::string& k) {
           return IntIn(v, k, 1, 4096, c.images.max_path_depth);
         }},
        {"stall_timeout", [&](const YAML::Node& v, const std::string& k) {
           return Duration(v, k, c.images.stall_timeout, /*zero_ok=*/false);
         }},
        {"pull_timeout", [&](const YAML::Node& v, const std::string& k) {
           return Duration(v, k, c.images.pull_timeout, /*zero_ok=*/true);
         }},
        {"pinned", [&](const YAML::Node& v, const std::string& k) {
           return Strings(v, k, c.images.pinned,
                          [&](const YAML::Node& item, const std::string& item_key,
                              const std::string& value) {
                            return value.empty() ? Error(item, item_key, "must not be empty")
                                                 : absl::OkStatus();
                          });
         }},
    });
  }

  absl::Status Streaming(const YAML::Node& n, const std::string& key, Config& c) {
    return Map(n, key, {
        {"address", [&](const YAML::Node& v, const std::string& k) {
           RETURN_IF_ERROR(String(v, k, c.streaming.address));
           if (c.streaming.address.empty()) return Error(v, k, "must not be empty");
           return absl::OkStatus();
         }},
        {"port", [&](const YAML::Node& v, const std::string& k) {
           return IntIn(v, k, 0, 65535, c.streaming.port);
         }},
        {"idle_timeout", [&](const YAML::Node& v, const std::string& k) {
           return Duration(v, k, c.streaming.idle_timeout, /*zero_ok=*/false);
         }},
        {"tls_cert", [&](const YAML::Node& v, const std::string& k) {
           return AbsPath(v, k, c.streaming.tls_cert, /*empty_ok=*/true);
         }},
        {"tls_key", [&](const YAML::Node& v, const std::string& k) {
           return AbsPath(v, k, c.streaming.tls_key, /*empty_ok=*/true);
         }},
    });
  }

  absl::Status Metrics(const YAML::Node& n, const std::string& key, Config& c) {
    return Map(n, key, {
        {"enabled", [&](const YAML::Node& v, const std::string& k) {
           return Bool(v, k, c.metrics.enabled);
         }},
        {"address", [&](const YAML::Node& v, const std::string& k) {
           RETURN_IF_ERROR(String(v, k, c.metrics.address));
           absl::Status valid = CheckHostPort(c.metrics.address);
           return valid.ok() ? valid : Error(v, k, valid.message());
         }},
    });
  }

  absl::string_view source_;
  Origins* origins_;
};

// An error about `key`, placed where the key was set; if it never was (a default), where the closest
// enclosing key or the first of `related` (the keys that made it wrong) was set.
absl::Status ValidationError(const Origins* origins, const std::string& key,
                             absl::string_view problem,
                             std::initializer_list<std::string> related = {}) {
  std::vector<std::string> candidates;
  for (std::string k = key; !k.empty();) {
    candidates.push_back(k);
    const size_t dot = k.rfind('.');
    k = dot == std::string::npos ? "" : k.substr(0, dot);
  }
  candidates.insert(candidates.end(), related.begin(), related.end());
  std::string where;
  for (const std::string& k : candidates) {
    if (origins == nullptr) break;
    if (auto it = origins->find(k); it != origins->end()) {
      where = absl::StrCat(it->second, ": ");
      break;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(where, key, ": ", problem));
}

absl::Status ApplyFile(const std::string& path, Config& config, Origins& origins) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ApplyYaml(text, path, config, &origins);
}

// The *.yaml files of a drop-in directory in lexical order; none if it does not exist.
absl::StatusOr<std::vector<std::string>> DropIns(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return files;
    return ErrnoToStatus(errno, absl::StrCat("config drop-in directory ", dir));
  }
  while (const dirent* entry = readdir(d)) {
    absl::string_view name = entry->d_name;
    if (name.size() > 5 && name.substr(name.size() - 5) == ".yaml" && name.front() != '.') {
      files.push_back(absl::StrCat(dir, "/", name));
    }
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

absl::StatusOr<std::chrono::seconds> ParseDuration(absl::string_view text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a duration such as 4h, 30m or 1h30m"));
  }
  if (d < absl::Seconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is shorter than one second"));
  }
  return std::chrono::seconds(absl::ToInt64Seconds(d));
}

std::string FormatDuration(std::chrono::seconds duration) {
  return absl::FormatDuration(absl::Seconds(duration.count()));
}

absl::Status ApplyYaml(absl::string_view yaml, absl::string_view source, Config& config,
                       Origins* origins) {
  // YAML is Unicode text; yaml-cpp would take other bytes as they are, and print them back
  // (ToYaml) as U+FFFD.
  if (const size_t bad = InvalidUtf8At(yaml); bad != absl::string_view::npos) {
    const absl::string_view before = yaml.substr(0, bad);
    const size_t line_start = before.rfind('\n');
    return absl::InvalidArgumentError(absl::StrCat(
        source, ":", std::count(before.begin(), before.end(), '\n') + 1, ":",
        bad - (line_start == absl::string_view::npos ? 0 : line_start + 1) + 1,
        ": not UTF-8 text"));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": ", e.msg));
  }
  try {
    return YamlApplier(source, origins).Apply(root, config);
  } catch (const YAML::Exception& e) {  // yaml-cpp throws on malformed node access
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
}

absl::Status Validate(const Config& c, const Origins* origins) {
  auto fail = [&](const std::string& key, absl::string_view problem,
                  std::initializer_list<std::string> related = {}) {
    return ValidationError(origins, key, problem, related);
  };
  for (const auto& [key, value] : {std::pair<std::string, const std::string*>{"root", &c.root},
                                   {"run_root", &c.run_root},
                                   {"listen", &c.listen}}) {
    if (!IsAbsolute(*value)) {
      return fail(key, absl::StrCat("'", *value, "' is not an absolute path"));
    }
  }
  if (!ParseLogLevel(c.log_level).ok()) {
    return fail("log_level",
                absl::StrCat("'", c.log_level, "' is not one of trace, debug, info, warn, error"));
  }
  if (!ParseLogFormat(c.log_format).ok()) {
    return fail("log_format", absl::StrCat("'", c.log_format, "' is not one of text, json"));
  }
  if (c.cgroup_manager != "cgroupfs" && c.cgroup_manager != "systemd") {
    return fail("cgroup_manager",
                absl::StrCat("'", c.cgroup_manager, "' is not one of cgroupfs, systemd"));
  }
  if (c.monitor.mode != "auto" && c.monitor.mode != "pod" && c.monitor.mode != "container") {
    return fail("monitor.mode",
                absl::StrCat("'", c.monitor.mode, "' is not one of auto, pod, container"));
  }
  if (c.runtimes.empty()) return fail("runtimes", "at least one runtime handler is needed");
  for (const auto& [name, handler] : c.runtimes) {
    if (!IsHandlerName(name)) {
      return fail(absl::StrCat("runtimes.", name),
                  "a runtime handler name uses only letters, digits, '_', '.' and '-'");
    }
    if (!IsAbsolute(handler.path)) {
      return fail(absl::StrCat("runtimes.", name, ".path"), "an absolute path is required");
    }
    if (!IsAbsolute(handler.root)) {
      return fail(absl::StrCat("runtimes.", name, ".root"), "an absolute path is required");
    }
  }
  if (!c.runtimes.contains(c.default_runtime)) {
    std::vector<std::string> names;
    for (const auto& [name, handler] : c.runtimes) names.push_back(name);
    return fail("default_runtime", absl::StrCat("'", c.default_runtime,
                                                "' is not a configured runtime (runtimes: ",
                                                absl::StrJoin(names, ", "), ")"),
                {absl::StrCat("runtimes.", c.default_runtime), "runtimes"});
  }
  if (c.streaming.tls_cert.empty() != c.streaming.tls_key.empty()) {
    return fail(c.streaming.tls_cert.empty() ? "streaming.tls_cert" : "streaming.tls_key",
                "tls_cert and tls_key are given together or not at all",
                {"streaming.tls_cert", "streaming.tls_key"});
  }
  if (c.streaming.idle_timeout < std::chrono::seconds(1)) {
    return fail("streaming.idle_timeout", "must be at least one second");
  }
  if (c.images.parallel_downloads < 1 || c.images.parallel_downloads > 64) {
    return fail("images.parallel_downloads", "is out of range 1..64");
  }
  for (const auto& [key, value] :
       {std::pair{"images.max_layer_size", c.images.max_layer_size},
        std::pair{"images.max_image_size", c.images.max_image_size},
        std::pair{"images.max_layer_entries", c.images.max_layer_entries},
        std::pair{"images.max_path_depth", c.images.max_path_depth}}) {
    if (value < 1) return fail(key, "must be at least 1");
  }
  if (c.images.stall_timeout < std::chrono::seconds(1)) {
    return fail("images.stall_timeout", "must be at least one second");
  }
  if (c.images.pull_timeout < std::chrono::seconds(0)) {
    return fail("images.pull_timeout", "must not be negative");
  }
  if (absl::Status s = CheckHostPort(c.metrics.address); !s.ok()) {
    return fail("metrics.address", s.message());
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> Load(const LoadOptions& options) {
  Config config;
  Origins origins;
  if (absl::Status s = ApplyFile(options.config_file, config, origins); !s.ok()) {
    if (!absl::IsNotFound(s) || options.config_file_required) return s;
  }
  const std::string drop_in_dir = options.drop_in_dir.empty()
                                      ? absl::StrCat(DirName(options.config_file), "/berth.d")
                                      : options.drop_in_dir;
  ASSIGN_OR_RETURN(std::vector<std::string> drop_ins, DropIns(drop_in_dir));
  for (const std::string& file : drop_ins) RETURN_IF_ERROR(ApplyFile(file, config, origins));

  auto flag = [&](const std::optional<std::string>& value, std::string& field,
                  const std::string& key, absl::string_view name) {
    if (value) {
      field = *value;
      origins[key] = absl::StrCat("--", name, " flag");
    }
  };
  flag(options.root, config.root, "root", "root");
  flag(options.run_root, config.run_root, "run_root", "run-root");
  flag(options.listen, config.listen, "listen", "listen");
  flag(options.log_level, config.log_level, "log_level", "log-level");
  RETURN_IF_ERROR(Validate(config, &origins));
  return config;
}

std::string ToYaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "root" << YAML::Value << c.root;
  out << YAML::Key << "run_root" << YAML::Value << c.run_root;
  out << YAML::Key << "listen" << YAML::Value << c.listen;
  out << YAML::Key << "log_level" << YAML::Value << c.log_level;
  out << YAML::Key << "log_format" << YAML::Value << c.log_format;
  out << YAML::Key << "cgroup_manager" << YAML::Value << c.cgroup_manager;
  out << YAML::Key << "default_runtime" << YAML::Value << c.default_runtime;
  out << YAML::Key << "runtimes" << YAML::Value << YAML::BeginMap;
  // Handlers merge into the defaults: a default one that was removed is printed removed.
  for (const auto& [name, handler] : Config().runtimes) {
    if (!c.runtimes.contains(name)) out << YAML::Key << name << YAML::Value << YAML::Null;
  }
  for (const auto& [name, handler] : c.runtimes) {
    out << YAML::Key << name << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "path" << YAML::Value << handler.path;
    out << YAML::Key << "root" << YAML::Value << handler.root;
    if (!handler.allowed_annotations.empty()) {
      out << YAML::Key << "allowed_annotations" << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (const std::string& a : handler.allowed_annotations) out << YAML::DoubleQuoted << a;
      out << YAML::EndSeq;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  out << YAML::Key << "monitor" << YAML::Value << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "path" << YAML::Value << YAML::DoubleQuoted << c.monitor.path;
  out << YAML::Key << "log_size_max" << YAML::Value << c.monitor.log_size_max;
  out << YAML::Key << "exec_sync_output_max" << YAML::Value << c.monitor.exec_sync_output_max;
  out << YAML::Key << "mode" << YAML::Value << c.monitor.mode;
  out << YAML::Key << "exec_sync" << YAML::Value << c.monitor.exec_sync;
  out << YAML::EndMap;
  out << YAML::Key << "pause" << YAML::Value << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "image" << YAML::Value << YAML::DoubleQuoted << c.pause.image;
  out << YAML::EndMap;
  out << YAML::Key << "network" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "conf_dir" << YAML::Value << c.network.conf_dir;
  out << YAML::Key << "bin_dirs" << YAML::Value << YAML::Flow << c.network.bin_dirs;
  out << YAML::Key << "default_network" << YAML::Value << YAML::DoubleQuoted
      << c.network.default_network;
  out << YAML::EndMap;
  out << YAML::Key << "images" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "registries" << YAML::Value << YAML::BeginSeq;
  for (const RegistryConfig& r : c.images.registries) {
    out << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "prefix" << YAML::Value << YAML::DoubleQuoted << r.prefix;
    if (!r.location.empty()) {
      out << YAML::Key << "location" << YAML::Value << YAML::DoubleQuoted << r.location;
    }
    out << YAML::Key << "insecure" << YAML::Value << r.insecure;
    if (!r.mirrors.empty()) {
      out << YAML::Key << "mirrors" << YAML::Value << YAML::BeginSeq;
      for (const RegistryMirror& m : r.mirrors) {
        out << YAML::BeginMap;
        out << YAML::Key << "location" << YAML::Value << YAML::DoubleQuoted << m.location;
        out << YAML::Key << "insecure" << YAML::Value << m.insecure;
        out << YAML::EndMap;
      }
      out << YAML::EndSeq;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "auth_file" << YAML::Value << YAML::DoubleQuoted << c.images.auth_file;
  out << YAML::Key << "parallel_downloads" << YAML::Value << c.images.parallel_downloads;
  out << YAML::Key << "max_layer_size" << YAML::Value << c.images.max_layer_size;
  out << YAML::Key << "max_image_size" << YAML::Value << c.images.max_image_size;
  out << YAML::Key << "max_layer_entries" << YAML::Value << c.images.max_layer_entries;
  out << YAML::Key << "max_path_depth" << YAML::Value << c.images.max_path_depth;
  out << YAML::Key << "stall_timeout" << YAML::Value << FormatDuration(c.images.stall_timeout);
  out << YAML::Key << "pull_timeout" << YAML::Value << FormatDuration(c.images.pull_timeout);
  out << YAML::Key << "pinned" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const std::string& p : c.images.pinned) out << YAML::DoubleQuoted << p;
  out << YAML::EndSeq;
  out << YAML::EndMap;
  out << YAML::Key << "streaming" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "address" << YAML::Value << c.streaming.address;
  out << YAML::Key << "port" << YAML::Value << c.streaming.port;
  out << YAML::Key << "idle_timeout" << YAML::Value << FormatDuration(c.streaming.idle_timeout);
  out << YAML::Key << "tls_cert" << YAML::Value << YAML::DoubleQuoted << c.streaming.tls_cert;
  out << YAML::Key << "tls_key" << YAML::Value << YAML::DoubleQuoted << c.streaming.tls_key;
  out << YAML::EndMap;
  out << YAML::Key << "metrics" << YAML::Value << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << c.metrics.enabled;
  out << YAML::Key << "address" << YAML::Value << YAML::DoubleQuoted << c.metrics.address;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return absl::StrCat(out.c_str(), "\n");
}

std::string ToJson(const Config& c) {
  using nlohmann::ordered_json;
  ordered_json runtimes = ordered_json::object();
  for (const auto& [name, handler] : c.runtimes) {
    runtimes[name] = {{"path", handler.path}, {"root", handler.root}};
    if (!handler.allowed_annotations.empty()) {
      runtimes[name]["allowed_annotations"] = handler.allowed_annotations;
    }
  }
  ordered_json registries = ordered_json::array();
  for (const RegistryConfig& r : c.images.registries) {
    ordered_json mirrors = ordered_json::array();
    for (const RegistryMirror& m : r.mirrors) {
      mirrors.push_back({{"location", m.location}, {"insecure", m.insecure}});
    }
    registries.push_back({{"prefix", r.prefix},
                          {"location", r.location},
                          {"insecure", r.insecure},
                          {"mirrors", mirrors}});
  }
  ordered_json j = {
      {"root", c.root},
      {"run_root", c.run_root},
      {"listen", c.listen},
      {"log_level", c.log_level},
      {"log_format", c.log_format},
      {"cgroup_manager", c.cgroup_manager},
      {"default_runtime", c.default_runtime},
      {"runtimes", runtimes},
      {"monitor",
       {{"path", c.monitor.path},
        {"log_size_max", c.monitor.log_size_max},
        {"exec_sync_output_max", c.monitor.exec_sync_output_max},
        {"mode", c.monitor.mode},
        {"exec_sync", c.monitor.exec_sync}}},
      {"pause", {{"image", c.pause.image}}},
      {"network",
       {{"conf_dir", c.network.conf_dir},
        {"bin_dirs", c.network.bin_dirs},
        {"default_network", c.network.default_network}}},
      {"images",
       {{"registries", registries},
        {"auth_file", c.images.auth_file},
        {"parallel_downloads", c.images.parallel_downloads},
        {"max_layer_size", c.images.max_layer_size},
        {"max_image_size", c.images.max_image_size},
        {"max_layer_entries", c.images.max_layer_entries},
        {"max_path_depth", c.images.max_path_depth},
        {"stall_timeout", FormatDuration(c.images.stall_timeout)},
        {"pull_timeout", FormatDuration(c.images.pull_timeout)},
        {"pinned", c.images.pinned}}},
      {"streaming",
       {{"address", c.streaming.address},
        {"port", c.streaming.port},
        {"idle_timeout", FormatDuration(c.streaming.idle_timeout)},
        {"tls_cert", c.streaming.tls_cert},
        {"tls_key", c.streaming.tls_key}}},
      {"metrics", {{"enabled", c.metrics.enabled}, {"address", c.metrics.address}}},
  };
  // YAML strings need not be UTF-8 (paths are bytes); JSON's must: print U+FFFD, never throw.
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace berth::config
