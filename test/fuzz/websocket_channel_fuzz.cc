// The channel protocol's messages (v4/v5.channel.k8s.io) as a WebSocket delivers them to an exec
// or attach session: stdin, its close, and terminal sizes as JSON, possibly split or
// concatenated. The first byte holds the flags (bit 0: v5; bit 1: the process is connected from
// the start, else after the messages); then come the messages, each after its length in one byte.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cri/streaming/inbound.h"
#include "fuzz_check.h"

using berth::cri::streaming::DeliverChannelMessage;
using berth::cri::streaming::Inbound;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool v5 = (data[0] & 1) != 0;
  const bool connected_first = (data[0] & 2) != 0;
  std::vector<std::string_view> messages;
  for (size_t at = 1; at < size;) {
    const size_t n = std::min<size_t>(data[at], size - at - 1);
    messages.emplace_back(reinterpret_cast<const char*>(data) + at + 1, n);
    at += 1 + n;
  }
  Inbound in;
  size_t received = 0, sent = 0;
  bool stdin_closed = false;
  auto connect = [&] {
    in.Connect([&](std::string_view d) { received += d.size(); }, [&] { stdin_closed = true; },
               [](unsigned w, unsigned h) {
                 FUZZ_CHECK(w > 0 && w <= 0xffff && h > 0 && h <= 0xffff);
               },
               [] {});
  };
  if (connected_first) connect();
  for (std::string_view m : messages) {
    if (!m.empty() && m[0] == 0) sent += m.size() - 1;
    DeliverChannelMessage(m, v5, in);
  }
  if (!connected_first) connect();
  in.Clear();
  FUZZ_CHECK(received == sent);
  if (!v5) FUZZ_CHECK(!stdin_closed);
  (void)in.AwaitSize(absl::ZeroDuration());
  return 0;
}
