#pragma once

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"

namespace berth {

// Failpoints: named steps of the create, stop, remove and pull flows where a test build can make
// berthd fail the call or die on the spot, to prove that every step undoes itself or is settled by
// the next start. Compiled in only with -DBERTH_FAILPOINTS=ON (the test build); elsewhere
// Failpoint() is an inline OK and costs nothing.
//
// Armed from the environment at the first hit: BERTH_FAILPOINTS="name=mode[,name=mode...]", mode
// `error` (the step fails with Internal "failpoint <name>"), `kill` (SIGKILL to berthd itself),
// `delay:<ms>` (the step waits, then goes on: a slow step, for the retry tests), each with `*N` to
// fire only on the first N hits (`error*1`). Every hit is logged.
// Thread-safe.
#ifdef BERTH_FAILPOINTS
absl::Status Failpoint(absl::string_view name);
// For tests in one process: replaces what the environment armed. "" disarms everything.
void ArmFailpoints(absl::string_view spec);
#else
inline absl::Status Failpoint(absl::string_view) { return absl::OkStatus(); }
#endif

// Every failpoint the flows have, in flow order. While any failpoint is armed, Failpoint() refuses
// (crashes on) a name not listed, so that a test walking this list walks every one.
const std::vector<std::string>& AllFailpoints();

}  // namespace berth
