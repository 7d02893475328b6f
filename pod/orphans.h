#pragma once

#include <set>
#include <string>

#include "cni/plugin.h"
#include "config/config.h"

namespace berth::pod {

// What the sweep at start found and removed.
struct SweepReport {
  int runtime_containers = 0;  // deleted from a runtime's state (their monitors end with them)
  int network_attachments = 0; // CNI DEL from the cache on root (a reboot releases IPs too)
  int mounts = 0;              // rootfs overlays, /dev/shm tmpfs, pinned network namespaces
  int paths = 0;               // directories and files under root and run_root
  int Total() const { return runtime_containers + network_attachments + mounts + paths; }
};

// Removes what berth made but no sandbox, container or intent explains (`known` holds every id
// the managers know, after they settled their intents): containers in each configured runtime's
// state whose bundle is under berth's root, CNI attachments in the cache (and the temporary files
// of cache writes cut short), mounts and pinned network namespaces under berth's roots, and the
// per-id directories and files of root/{containers,sandboxes,logs} and
// run_root/{pods,netns,monitor,exits,socks,exec}, and the processes exec work directories name
// (an ExecSync or exec session a killed berthd was running). Nothing outside berth's roots is
// touched.
// Failures are logged; what is left is tried again next start.
SweepReport SweepOrphans(const config::Config& config, const std::set<std::string>& known,
                         cni::NetworkPlugin* network);

}  // namespace berth::pod
