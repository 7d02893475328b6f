#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "test/lib/berth_daemon.h"
#include "test/lib/cri_client.h"

namespace berth::testing {

// What the tests know of a berthd's pods and containers when they look for leaks.
struct LeakScope {
  // The pod sandboxes and containers meant to exist still: what is theirs is no leak.
  std::set<std::string> live;
  // Every pod and container id the test was told (live or not): their processes and cgroups are
  // looked for too. Ids the test never learnt (a create that failed) are caught by the
  // directories, the mounts and `cgroup_parent`.
  std::set<std::string> ids;
  // The cgroup parent the test's pods ran under ("" = none): below it, only live ids' cgroups.
  std::string cgroup_parent;
  // Runtime state roots besides run_root/runc (other handlers' roots).
  std::vector<std::string> runtime_roots;
};

// What berthd left that does not belong to `scope.live`, one line each (empty: nothing), looked
// for from outside, berthd running or not: mounts under its directory, pinned network namespaces,
// per-id entries under root/{containers,sandboxes,cni-cache} and
// run_root/{pods,netns,monitor,exits,socks,exec}, runtime state, IPs the host-local IPAM of its
// networks (<dir>/ipam) holds, monitor and container processes, cgroups.
std::vector<std::string> FindLeaks(const BerthDaemon& daemon, const LeakScope& scope = {});

// The pod sandboxes and containers berthd lists (ListPodSandbox, ListContainers).
absl::StatusOr<std::set<std::string>> ListedIds(CriClient& cri);

// The addresses the host-local IPAM of berthd's networks (<dir>/ipam) holds, as "<ip> of <id>".
std::vector<std::string> ReservedAddresses(const BerthDaemon& daemon);

// After berthd stopped: rows of berth.db (sandboxes, containers) that are not `live`, any intent,
// and what the image store would clean up at its next start: entries of root/tmp and layer
// directories no row of layers describes.
std::vector<std::string> FindStoredLeaks(const BerthDaemon& daemon,
                                         const std::set<std::string>& live = {});

}  // namespace berth::testing
