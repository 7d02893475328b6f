#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "cri/streaming/inbound.h"
#include "cri/streaming/server.h"

namespace berth::cri::streaming {

// A remote-command session's connection to the client: SPDY streams or WebSocket channels.
class Transport {
 public:
  virtual ~Transport() = default;
  // Waits (bounded) until the client can take what the request promised.
  virtual void AwaitReady(const Request& request) = 0;
  // False once the client is gone.
  virtual bool Send(Channel channel, std::string_view data) = 0;
  // Reports how it ended on the error channel (as the protocol version wants it: a
  // metav1.Status from v4 on, the bare error message before), ends the session and waits for its
  // reader. `error` is "" when the command ran; `exit_code` is then its exit code.
  virtual void Finish(int exit_code, const std::string& error) = 0;
};

}  // namespace berth::cri::streaming
