#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace berth::pod {

// The item with this full id, or the only one whose id starts with it (crictl and kubectl
// accept id prefixes). NotFound "<kind> "<id>" not found"; InvalidArgument if ambiguous.
template <typename Ptr>
absl::StatusOr<Ptr> FindByIdOrPrefix(const std::map<std::string, Ptr>& items, const std::string& id,
                                     const char* kind) {
  if (auto it = items.find(id); it != items.end()) return it->second;
  Ptr found;
  if (!id.empty()) {
    for (auto it = items.lower_bound(id); it != items.end() && absl::StartsWith(it->first, id);
         ++it) {
      if (found) {
        return absl::InvalidArgumentError(absl::StrCat(kind, " id prefix \"", id, "\" is ambiguous"));
      }
      found = it->second;
    }
  }
  if (!found) return absl::NotFoundError(absl::StrCat(kind, " \"", id, "\" not found"));
  return found;
}

}  // namespace berth::pod
