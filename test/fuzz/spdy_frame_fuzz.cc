// A SPDY/3.1 session as a client's bytes reach it: the input is written to one end of a socket
// pair, which is then shut for writing, and Session::Run reads the frames from the other end until
// it ends. What the session sends back is drained by a thread, so that it never blocks.

#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>

#include "cri/streaming/spdy.h"
#include "fuzz_check.h"

namespace spdy = berth::cri::spdy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A unix socket buffers this much at once whatever the system's settings.
  if (size > (64 << 10)) return 0;
  int pair[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  const int client = pair[1];
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(client, data + done, size - done);
    FUZZ_CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  ::shutdown(client, SHUT_WR);
  std::thread drain([client] {
    char buf[4096];
    while (::read(client, buf, sizeof buf) > 0) {
    }
  });
  {
    spdy::Session session(pair[0]);  // owns pair[0]
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
  drain.join();
  ::close(client);
  return 0;
}
