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

// What a log line is about: the CRI call it belongs to (its request id) and, once known, the pod
// and the container. Per thread: a call's lines carry it wherever the call runs, because the
// code that hands a call to another thread (the long-call pool) carries the context along.
struct LogContext {
  std::string request;
  std::string pod;
  std::string container;
  bool empty() const { return request.empty() && pod.empty() && container.empty(); }
};
// This thread's context (empty outside a CRI call).
const LogContext& CurrentLogContext();
// Replaces this thread's context (the call interceptor, as a call begins and ends).
void SetLogContext(LogContext context);
// Sets this thread's context for a scope, and restores the one before.
class ScopedLogContext {
 public:
  explicit ScopedLogContext(LogContext context);
  ~ScopedLogContext();
  ScopedLogContext(const ScopedLogContext&) = delete;
  ScopedLogContext& operator=(const ScopedLogContext&) = delete;

 private:
  LogContext saved_;
};
// What a handler learns from its request: the pod's or the container's id (a full id, or what the
// request named). No-op outside a CRI call.
void SetLogPod(absl::string_view pod);
void SetLogContainer(absl::string_view container);

// How log lines look: text ("<time> <level> <message> [request=.. pod=.. container=..]") or
// one JSON object per line ({"time", "level", "msg", and "request", "pod", "container" when set}).
enum class LogFormat { kText, kJson };
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);

// Sets up the process-wide logger (stderr, with timestamps) at the given level. Thread-safe.
void InitLogging(spdlog::level::level_enum level, LogFormat format = LogFormat::kText);

// Changes the level of the process-wide logger at run time (SIGHUP). Thread-safe.
void SetLogLevel(spdlog::level::level_enum level);

}  // namespace berth
