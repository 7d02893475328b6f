#pragma once

// The children berthd did not start itself. As the child subreaper it becomes the parent of
// whatever its children leave running when they exit: the process of an ExecSync once
// `runc exec --detach` has started it (so that berthd can wait for it and have its exit status, with
// no monitor process per call), and the monitors that conmon's double fork leaves. Those must be
// reaped by someone, and only those: SpawnProcess's children are reaped by their callers.

#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <optional>

#include "absl/status/status.h"

namespace berth {

// PR_SET_CHILD_SUBREAPER for the whole process. Idempotent.
absl::Status BecomeSubreaper();

// Waits for `pid`, a child SpawnProcess started or one this caller claimed (waitpid, retried on
// EINTR), and forgets it: its wait status, -1 if it is not a child.
int ReapChild(pid_t pid);

// While claimed, an adopted child is its claimer's to wait for (ReapChild); the claim ends there.
void ClaimChild(pid_t pid);

// Reaps the adopted children that have exited and that no one started or claimed, at once: a
// process left to us may hold up others (the init of a pod's pid namespace cannot finish exiting
// while a process of that namespace is unreaped). While a claim is pending (ClaimPending), those
// that started less than `young` ago are left for later, as the claimer may be about to read the
// pid of one that exited at once; `deferred` says whether any was. Returns how many it reaped.
int ReapAdoptedChildren(std::chrono::seconds young, bool* deferred);

// Held from starting what will leave a process to us until ClaimChild of it: see above.
class ClaimPending {
 public:
  ClaimPending();
  ~ClaimPending();
  ClaimPending(const ClaimPending&) = delete;
  ClaimPending& operator=(const ClaimPending&) = delete;
};

// How long ago process `pid` started; nullopt if there is none.
std::optional<std::chrono::milliseconds> ProcessAge(pid_t pid);

namespace internal {
// SpawnProcess holds this across posix_spawn and records the child before letting go, so that the
// reaper never takes a child whose caller is about to wait for it.
std::unique_lock<std::mutex> LockChildren();
void RecordSpawned(pid_t pid);
}  // namespace internal

}  // namespace berth
