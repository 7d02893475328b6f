#include "base/logging.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "spdlog/pattern_formatter.h"
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

namespace {

thread_local LogContext current_context;

// %& in the text pattern: " [request=.. pod=.. container=..]" when the line belongs to a call.
class ContextFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const LogContext& c = current_context;
    if (c.empty()) return;
    std::string text = " [";
    auto add = [&text](const char* key, const std::string& value) {
      if (value.empty()) return;
      if (text.size() > 2) text += ' ';
      absl::StrAppend(&text, key, "=", value);
    };
    add("request", c.request);
    add("pod", c.pod);
    add("container", c.container);
    text += ']';
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<ContextFlag>();
  }
};

// One JSON object per line. Messages may hold anything (a registry's error text): invalid UTF-8
// is replaced, never a reason to drop the line.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::json line;
    line["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromChrono(msg.time),
                                    absl::UTCTimeZone());
    const auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string(level.data(), level.size());
    line["msg"] = std::string(msg.payload.data(), msg.payload.size());
    const LogContext& c = current_context;
    if (!c.request.empty()) line["request"] = c.request;
    if (!c.pod.empty()) line["pod"] = c.pod;
    if (!c.container.empty()) line["container"] = c.container;
    const std::string text =
        line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

const LogContext& CurrentLogContext() { return current_context; }

void SetLogContext(LogContext context) { current_context = std::move(context); }

ScopedLogContext::ScopedLogContext(LogContext context)
    : saved_(std::exchange(current_context, std::move(context))) {}

ScopedLogContext::~ScopedLogContext() { current_context = std::move(saved_); }

void SetLogPod(absl::string_view pod) {
  if (!current_context.request.empty()) current_context.pod = std::string(pod);
}

void SetLogContainer(absl::string_view container) {
  if (!current_context.request.empty()) current_context.container = std::string(container);
}

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown log format \"", name, "\" (want text or json)"));
}

void InitLogging(spdlog::level::level_enum level, LogFormat format) {
  auto logger = spdlog::stderr_logger_mt("berth");
  if (format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    auto text = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    text->add_flag<ContextFlag>('&').set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v%&");
    logger->set_formatter(std::move(text));
  }
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  SetLogLevel(level);
}

void SetLogLevel(spdlog::level::level_enum level) { spdlog::set_level(level); }

}  // namespace berth
