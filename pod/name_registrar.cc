#include "pod/name_registrar.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace berth::pod {

absl::StatusOr<std::optional<std::string>> NameRegistrar::Reserve(const std::string& key,
                                                                  const std::string& id,
                                                                  const RequestOrigin& origin) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    auto it = names_.find(key);
    if (it == names_.end()) {
      names_[key] = Entry{id, State::kCreating, origin.fingerprint, clock_.Now()};
      return std::nullopt;
    }
    Entry& holder = it->second;
    const bool same = !origin.fingerprint.empty() && holder.fingerprint == origin.fingerprint;
    switch (holder.state) {
      case State::kHeld:
        return absl::AlreadyExistsError(absl::StrCat(kind_, " name \"", key,
                                                     "\" is reserved by ", kind_, " ", holder.id));
      case State::kKept:
        if (!same) {
          return absl::AlreadyExistsError(absl::StrCat(
              kind_, " name \"", key, "\" is reserved by ", kind_, " ", holder.id,
              ", which an earlier request with a different config created after its caller gave "
              "up; it is removed if nobody claims it"));
        }
        holder.state = State::kHeld;
        kept_.erase(holder.id);
        return std::optional<std::string>(holder.id);
      case State::kCreating:
        if (!same) {
          return absl::AlreadyExistsError(
              absl::StrCat(kind_, " name \"", key, "\" is reserved by ", kind_, " ", holder.id,
                           ", which an earlier request is still creating"));
        }
        // A retry of a create still under way: wait for its outcome.
        if (origin.Gone()) {
          return absl::CancelledError(absl::StrCat("the caller gave up while ", kind_, " ",
                                                   holder.id, " of the same request was created"));
        }
        {
          auto ended = [this, &key]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
            auto found = names_.find(key);
            return found == names_.end() || found->second.state != State::kCreating;
          };
          mu_.AwaitWithTimeout(absl::Condition(&ended), absl::Milliseconds(100));
        }
        break;
    }
  }
}

void NameRegistrar::Release(const std::string& key, const std::string& id) {
  absl::MutexLock lock(&mu_);
  if (auto it = names_.find(key); it != names_.end() && it->second.id == id) names_.erase(it);
}

bool NameRegistrar::Complete(const std::string& key, const std::string& id,
                             const RequestOrigin& origin) {
  const bool gone = origin.Gone();
  absl::MutexLock lock(&mu_);
  Entry& entry = names_[key];
  entry.id = id;
  entry.since = clock_.Now();
  entry.state = gone ? State::kKept : State::kHeld;
  if (gone) kept_.insert(id);
  return !gone;
}

void NameRegistrar::Hold(const std::string& key, const std::string& id) {
  absl::MutexLock lock(&mu_);
  names_[key] = Entry{id, State::kHeld, "", clock_.Now()};
}

void NameRegistrar::Erase(const std::string& key, const std::string& id) {
  absl::MutexLock lock(&mu_);
  kept_.erase(id);
  if (auto it = names_.find(key); it != names_.end() && it->second.id == id) names_.erase(it);
}

bool NameRegistrar::IsKept(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  return kept_.contains(id);
}

std::set<std::string> NameRegistrar::Kept() const {
  absl::MutexLock lock(&mu_);
  return kept_;
}

std::vector<std::string> NameRegistrar::Expired() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  const absl::Time now = clock_.Now();
  for (const auto& [key, entry] : names_) {
    if (entry.state == State::kKept && now - entry.since >= keep_for_) out.push_back(entry.id);
  }
  return out;
}

}  // namespace berth::pod
