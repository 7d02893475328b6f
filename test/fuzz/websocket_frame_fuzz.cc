// WebSocket frames from an exec or attach client, through our WebSocket (Boost.Beast under it)
// into the channel protocol: the input's first byte picks v5.channel.k8s.io (odd) or v4, the rest
// is what the client sends after its upgrade request. It is written to one end of a socket pair,
// shut for writing, and the connection reads it all; what it sends back is drained by a thread.


#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "cri/streaming/inbound.h"
#include "cri/streaming/websocket.h"
#include "fed_socket.h"
#include "fuzz_check.h"

using berth::cri::streaming::DeliverChannelMessage;
using berth::cri::streaming::Inbound;
using berth::cri::streaming::WebSocket;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // FedSocket buffers at most 64 KiB.
  if (size < 1 || size > (64 << 10)) return 0;
  const bool v5 = (data[0] & 1) != 0;
  const std::string protocol = v5 ? "v5.channel.k8s.io" : "v4.channel.k8s.io";
  FedSocket socket(data + 1, size - 1);
  const WebSocket::HttpHead head{
      "GET",
      "/exec/fuzz",
      {{"Host", "127.0.0.1"},
       {"Upgrade", "websocket"},
       {"Connection", "Upgrade"},
       {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
       {"Sec-WebSocket-Version", "13"},
       {"Sec-WebSocket-Protocol", protocol}}};
  absl::StatusOr<std::unique_ptr<WebSocket>> ws =
      WebSocket::Accept(socket.server(), head, protocol, std::chrono::milliseconds(0));
  FUZZ_CHECK(ws.ok());
  Inbound in;
  size_t stdin_bytes = 0;
  in.Connect([&](std::string_view d) { stdin_bytes += d.size(); }, [] {},
             [](unsigned w, unsigned h) {
               FUZZ_CHECK(w > 0 && w <= 0xffff && h > 0 && h <= 0xffff);
             },
             [] {});
  std::mutex mu;
  std::condition_variable cv;
  bool closed = false;
  (*ws)->Start([&](std::string_view m) { DeliverChannelMessage(m, v5, in); },
               [&] {
                 std::lock_guard<std::mutex> lock(mu);
                 closed = true;
                 cv.notify_all();
               });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return closed; });
  }
  ws->reset();  // closes the socket
  in.Clear();
  FUZZ_CHECK(stdin_bytes <= size);
  return 0;
}
