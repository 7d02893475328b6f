// What a remote-command client sends, as the transports deliver it.

#include "cri/streaming/inbound.h"

#include <cstdint>

#include "nlohmann/json.hpp"

namespace berth::cri::streaming {
namespace {

constexpr unsigned char kCloseChannel = 255;

// A terminal dimension from a resize message: a number in 1..65535 (a winsize field), else 0.
unsigned Dimension(const nlohmann::json& size, const char* key) {
  auto it = size.find(key);
  if (it == size.end() || !it->is_number_integer()) return 0;
  const int64_t v = it->get<int64_t>();
  return v > 0 && v <= 0xffff ? static_cast<unsigned>(v) : 0;
}

}  // namespace

void Inbound::Stdin(std::string_view data) {
  absl::MutexLock lock(&mu_);
  if (sink_) {
    if (!data.empty()) sink_(data);
    return;
  }
  if (gone_) return;
  if (pending_.size() + data.size() > kMaxPendingStdin) {
    // Far more than a process yet to start can be owed: the session ends, as if the client left.
    pending_.clear();
    gone_ = true;
    return;
  }
  pending_.append(data);
}

void Inbound::StdinClosed() {
  absl::MutexLock lock(&mu_);
  stdin_closed_ = true;
  if (close_) close_();
}

void Inbound::ResizeJson(std::string_view data) {
  absl::MutexLock lock(&mu_);
  resize_buffer_.append(data);
  for (;;) {
    const size_t end = resize_buffer_.find('}');
    if (end == std::string::npos) {
      // Sizes are a few bytes each: a longer unterminated run is not one.
      if (resize_buffer_.size() > kMaxResizeMessage) resize_buffer_.clear();
      return;
    }
    nlohmann::json size = nlohmann::json::parse(resize_buffer_.substr(0, end + 1), nullptr, false);
    resize_buffer_.erase(0, end + 1);
    if (!size.is_object()) continue;
    const unsigned width = Dimension(size, "Width"), height = Dimension(size, "Height");
    if (width == 0 || height == 0) continue;  // malformed: ignored
    width_ = width;
    height_ = height;
    if (resize_) resize_(width_, height_);
  }
}

void Inbound::Gone() {
  absl::MutexLock lock(&mu_);
  gone_ = true;
  if (close_) close_();
  if (gone_fn_) gone_fn_();
}

void Inbound::Connect(std::function<void(std::string_view)> sink, std::function<void()> close,
                      std::function<void(unsigned, unsigned)> resize, std::function<void()> gone) {
  absl::MutexLock lock(&mu_);
  sink_ = std::move(sink);
  close_ = std::move(close);
  resize_ = std::move(resize);
  gone_fn_ = std::move(gone);
  if (!pending_.empty() && sink_) sink_(pending_);
  pending_.clear();
  if (stdin_closed_ && close_) close_();
  if (gone_ && gone_fn_) gone_fn_();
}

void Inbound::Clear() {
  absl::MutexLock lock(&mu_);
  sink_ = nullptr;
  close_ = nullptr;
  resize_ = nullptr;
  gone_fn_ = nullptr;
}

std::pair<unsigned, unsigned> Inbound::AwaitSize(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto sized = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return width_ > 0 || gone_; };
  mu_.AwaitWithTimeout(absl::Condition(&sized), timeout);
  return {width_, height_};
}

bool Inbound::gone() {
  absl::MutexLock lock(&mu_);
  return gone_;
}

void DeliverChannelMessage(std::string_view message, bool v5, Inbound& in) {
  if (message.empty()) return;
  const auto channel = static_cast<unsigned char>(message[0]);
  message.remove_prefix(1);
  if (channel == kCloseChannel && v5) {
    if (!message.empty() && message[0] == static_cast<char>(Channel::kStdin)) in.StdinClosed();
  } else if (channel == static_cast<unsigned char>(Channel::kStdin)) {
    in.Stdin(message);
  } else if (channel == static_cast<unsigned char>(Channel::kResize)) {
    in.ResizeJson(message);
  }
}

}  // namespace berth::cri::streaming
