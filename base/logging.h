#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "spdlog/spdlog.h"

// Debian 12's abseil is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0),
// so berth uses absl::string_view throughout; this lets log lines format it (status.message()).
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace berth {

// The log levels operators configure: trace|debug|info|warn|error.
absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(absl::string_view name);

// Sets up the process-wide logger (stderr, with timestamps) at the given level. Thread-safe.
void InitLogging(spdlog::level::level_enum level);

// Changes the level of the process-wide logger at run time (SIGHUP). Thread-safe.
void SetLogLevel(spdlog::level::level_enum level);

}  // namespace berth
