#pragma once

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace berth::pod {

// What an OCI runtime handler can do for kubelet (CRI RuntimeHandlerFeatures).
struct HandlerFeatures {
  bool recursive_read_only_mounts = false;
  // The runtime supports user namespaces and idmapped mounts, which kubelet's user namespaces
  // need. (berth does not run pods in user namespaces yet: see RuntimeService::Status.)
  bool idmapped_mounts = false;
  bool operator==(const HandlerFeatures&) const = default;
};

// The features in a runtime's `features` JSON (the OCI runtime-spec features document that runc
// >= 1.1 and crun >= 1.9 print): recursive read-only mounts when its mount options have "rro" and
// the kernel has mount_setattr (5.12); idmapped mounts when it supports the user namespace and
// reports idmapped mounts enabled. All false for a document that cannot be parsed.
HandlerFeatures ParseRuntimeFeatures(const std::string& features_json, const std::string& kernel);

// Asks each runtime binary once (`<path> features`) and remembers the answer, so that Status,
// which kubelet calls every few seconds, never runs a process after the first time. A runtime
// without a features command has none of the features. Thread-safe.
class RuntimeFeatureCache {
 public:
  HandlerFeatures Get(const std::string& runtime_path);

 private:
  absl::Mutex mu_;
  std::map<std::string, HandlerFeatures> by_path_ ABSL_GUARDED_BY(mu_);
};

}  // namespace berth::pod
