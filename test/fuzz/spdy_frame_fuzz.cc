// A SPDY/3.1 session as a client's bytes reach it: the input is written to one end of a socket
// pair, which is then shut for writing, and Session::Run reads the frames from the other end until
// it ends. What the session sends back is drained by a thread, so that it never blocks.


#include <cstddef>
#include <cstdint>
#include <string>

#include "cri/streaming/spdy.h"
#include "fed_socket.h"
#include "fuzz_check.h"

namespace spdy = berth::cri::spdy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // FedSocket buffers at most 64 KiB.
  if (size > (64 << 10)) return 0;
  FedSocket socket(data, size);
  {
    spdy::Session session(socket.server());  // owns it
    spdy::Session::Handlers handlers;
    handlers.on_stream = [&session](uint32_t stream, const spdy::Headers& headers, bool) {
      FUZZ_CHECK(headers.size() <= 256);
      (void)spdy::HeaderValue(headers, "streamtype");
      (void)session.Reply(stream, {{"Status", "200"}});
    };
    handlers.on_data = [&session](uint32_t stream, std::string_view d, bool fin) {
      if (fin) (void)session.Data(stream, d, true);
    };
    handlers.on_reset = [](uint32_t) {};
    (void)session.Run(handlers);
  }
  return 0;
}
