#include "base/logging.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace berth {

absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(absl::string_view name) {
  static constexpr std::pair<absl::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},
  };
  for (const auto& [level_name, level] : kLevels) {
    if (name == level_name) {
      return level;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log level \"", name, "\" (want trace, debug, info, warn or error)"));
}

void InitLogging(spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_logger_mt("berth");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  SetLogLevel(level);
}

void SetLogLevel(spdlog::level::level_enum level) { spdlog::set_level(level); }

}  // namespace berth
