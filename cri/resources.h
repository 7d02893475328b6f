#pragma once

#include "api.pb.h"
#include "pod/resources.h"

namespace berth::cri {

// CRI LinuxContainerResources <-> pod::ResourcesSpec, field for field: what kubelet sent is what
// is kept and reported (ContainerStatus); what the host applies is pod::OciResources' business.
pod::ResourcesSpec ToResources(const runtime::v1::LinuxContainerResources& r);
void FromResources(const pod::ResourcesSpec& r, runtime::v1::LinuxContainerResources* out);

}  // namespace berth::cri
