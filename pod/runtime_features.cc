#include "pod/runtime_features.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_split.h"
#include "base/logging.h"
#include "base/process.h"
#include "nlohmann/json.hpp"

namespace berth::pod {
namespace {

// mount_setattr(2) with AT_RECURSIVE, which "rro" needs, came with Linux 5.12.
bool KernelHasMountSetattr(const std::string& release) {
  int major = 0, minor = 0;
  if (std::sscanf(release.c_str(), "%d.%d", &major, &minor) != 2) return false;
  return major > 5 || (major == 5 && minor >= 12);
}

bool Contains(const nlohmann::json& list, const std::string& value) {
  return list.is_array() && std::find(list.begin(), list.end(), value) != list.end();
}

// The member at a "/"-separated path, or null where any step of it is missing or not an object.
const nlohmann::json* Member(const nlohmann::json& doc, const std::string& path) {
  const nlohmann::json* at = &doc;
  for (absl::string_view key : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (!at->is_object()) return nullptr;
    auto it = at->find(std::string(key));
    if (it == at->end()) return nullptr;
    at = &*it;
  }
  return at;
}

}  // namespace

HandlerFeatures ParseRuntimeFeatures(const std::string& features_json, const std::string& kernel) {
  HandlerFeatures f;
  const nlohmann::json doc = nlohmann::json::parse(features_json, nullptr, false);
  if (!doc.is_object()) return f;
  const nlohmann::json* options = Member(doc, "/mountOptions");
  f.recursive_read_only_mounts =
      KernelHasMountSetattr(kernel) && options != nullptr && Contains(*options, "rro");
  // Walked with pointers: value() would throw on a member of the wrong type.
  const nlohmann::json* namespaces = Member(doc, "/linux/namespaces");
  const nlohmann::json* idmap = Member(doc, "/linux/mountExtensions/idmap/enabled");
  f.idmapped_mounts = namespaces != nullptr && Contains(*namespaces, "user") &&
                      idmap != nullptr && idmap->is_boolean() && idmap->get<bool>();
  return f;
}

HandlerFeatures RuntimeFeatureCache::Get(const std::string& runtime_path) {
  {
    absl::MutexLock lock(&mu_);
    auto it = by_path_.find(runtime_path);
    if (it != by_path_.end()) return it->second;
  }
  // Probed outside the lock; two first callers may both probe, with the same answer.
  HandlerFeatures f;
  absl::StatusOr<ProcessResult> r = RunProcess(
      {.argv = {runtime_path, "features"},
       .env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
       .timeout = std::chrono::seconds(10)});
  struct utsname u;
  const std::string kernel = ::uname(&u) == 0 ? u.release : "";
  if (r.ok() && r->exit_code == 0) {
    f = ParseRuntimeFeatures(r->stdout_data, kernel);
  } else {
    spdlog::info("{} features: {}; assuming no recursive read-only mounts or user namespaces",
                 runtime_path, r.ok() ? Tail(r->stderr_data, 200) : r.status().ToString());
  }
  absl::MutexLock lock(&mu_);
  return by_path_.emplace(runtime_path, f).first->second;
}

}  // namespace berth::pod
