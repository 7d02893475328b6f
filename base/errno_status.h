#pragma once

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace berth {

// A status for a failed syscall: the code follows errno (ENOENT -> NotFound, EEXIST ->
// AlreadyExists, EACCES/EPERM -> PermissionDenied, EINVAL -> InvalidArgument, otherwise Internal),
// the message is "<what>: <strerror>".
absl::Status ErrnoToStatus(int err, absl::string_view what);

// Prefixes a non-OK status's message with context: "<context>: <message>". OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace berth
