#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"

namespace berth::pod {

// Who made a create request: a fingerprint of what it asked for (equal for equal requests) and
// whether its caller has gone (gave up waiting: kubelet's runtime request timeout).
struct RequestOrigin {
  std::string fingerprint;
  std::function<bool()> gone;  // null: never
  bool Gone() const { return gone && gone(); }
};

// The names of one kind of object (sandboxes or containers). A name is reserved by a create under
// way and then held by what it made. kubelet gives up on a create that takes too long and retries
// it with the same name (cri-o's ResourceStore behaviour, which we follow): a create that finishes
// after its caller left is kept, hidden, for that retry. The retry of the same request gets its id;
// a request with another config gets AlreadyExists that says so; a kept result nobody claims
// within `keep_for` expires, for the owner to remove. A retry that arrives while the first create
// is still under way waits for it. Thread-safe.
class NameRegistrar {
 public:
  NameRegistrar(std::string kind, std::chrono::seconds keep_for,
                const Clock& clock = Clock::Real())
      : kind_(std::move(kind)), keep_for_(absl::FromChrono(keep_for)), clock_(clock) {}

  // Reserves `key` for a new create of `id`. Returns nullopt: go ahead and create; an id: the kept
  // result of an equal request, claimed now (return it to the caller); AlreadyExists naming the
  // holder; Cancelled when the caller went while waiting for a create under way.
  absl::StatusOr<std::optional<std::string>> Reserve(const std::string& key, const std::string& id,
                                                     const RequestOrigin& origin);
  // The create of `id` failed and undid itself: the name is free.
  void Release(const std::string& key, const std::string& id);
  // The create of `id` succeeded. If its caller has gone meanwhile the result is kept for a
  // retry and this returns false (do not report it); otherwise the name is held and true.
  bool Complete(const std::string& key, const std::string& id, const RequestOrigin& origin);
  // At start: `key` is held by `id`.
  void Hold(const std::string& key, const std::string& id);
  // `id` is removed: its name is free.
  void Erase(const std::string& key, const std::string& id);

  // Whether `id` is a kept result nobody has claimed yet (lists do not show it).
  bool IsKept(const std::string& id) const;
  // Every such id: one lock for a whole list, and almost always empty.
  std::set<std::string> Kept() const;
  // Kept results older than keep_for: they stay kept (hidden) until Erase.
  std::vector<std::string> Expired() const;

 private:
  enum class State { kCreating, kHeld, kKept };
  struct Entry {
    std::string id;
    State state = State::kCreating;
    std::string fingerprint;
    absl::Time since;
  };

  const std::string kind_;
  const absl::Duration keep_for_;
  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> names_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> kept_ ABSL_GUARDED_BY(mu_);  // ids
};

}  // namespace berth::pod
