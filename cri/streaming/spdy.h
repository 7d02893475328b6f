#pragma once

#include <zlib.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace berth::cri::spdy {

// SPDY/3.1 (the framing under Kubernetes' streaming protocols), server side, as the Kubernetes
// clients (moby/spdystream) speak it: control and data frames, header blocks compressed with
// zlib and the SPDY dictionary (one compression context per direction), SYN_STREAM answered by
// SYN_REPLY, PING echoed, WINDOW_UPDATE sent for what we consumed. The clients do not send
// window updates, so our sending ignores their windows.

// Header names are lower case.
using Headers = std::vector<std::pair<std::string, std::string>>;
std::string HeaderValue(const Headers& headers, std::string_view name);

const std::string& HeaderDictionary();

inline constexpr uint32_t kProtocolError = 1;  // RST_STREAM status
inline constexpr uint32_t kGoAwayProtocolError = 1;  // GOAWAY status

// The header blocks one side of a session receives: one zlib stream (with the SPDY dictionary)
// across all of them, so blocks must be decoded in the order they came. A block decompresses to
// at most 64 KiB and 256 headers. Not thread-safe; owns its zlib context.
class HeaderDecoder {
 public:
  HeaderDecoder();
  ~HeaderDecoder();
  HeaderDecoder(const HeaderDecoder&) = delete;
  HeaderDecoder& operator=(const HeaderDecoder&) = delete;

  // Appends the block's headers to `out`. InvalidArgument if it does not decompress, the zlib
  // stream ended, it is over a bound, or it is truncated; the decoder is then unusable.
  absl::Status Decode(std::string_view block, Headers* out);

 private:
  z_stream inflate_{};
};

// One SPDY connection over a connected socket. Run() reads frames on the caller's thread and
// calls the handlers there; the send functions may be called from any thread (writes are
// serialised). The socket is owned and closed by the session.
class Session {
 public:
  struct Handlers {
    std::function<void(uint32_t stream, const Headers& headers, bool fin)> on_stream;
    std::function<void(uint32_t stream, std::string_view data, bool fin)> on_data;
    std::function<void(uint32_t stream)> on_reset;
  };

  explicit Session(int fd);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Until the peer closes the connection, sends GOAWAY, breaks the protocol, or Close() is
  // called. Returns why it ended (OK for an orderly end).
  absl::Status Run(const Handlers& handlers);

  absl::Status Reply(uint32_t stream, const Headers& headers = {}, bool fin = false);
  absl::Status Data(uint32_t stream, std::string_view data, bool fin = false);
  absl::Status Reset(uint32_t stream, uint32_t status);
  // Sends GOAWAY (with `status`: 0 OK, 1 PROTOCOL_ERROR) and shuts the socket down: Run()
  // returns. Run() itself closes with PROTOCOL_ERROR when the peer breaks the protocol.
  void Close(uint32_t status = 0);
  // How long the session may go without a frame in either direction before Run() gives up
  // (0 = forever).
  void set_idle_timeout_ms(int64_t ms) { idle_timeout_ms_ = ms; }

 private:
  absl::Status ReadFrames(const Handlers& handlers);
  absl::Status ReadFull(char* buf, size_t n);
  absl::Status WriteLocked(const std::string& frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status Control(uint16_t type, uint8_t flags, const std::string& payload);
  std::string EncodeHeaders(const Headers& headers) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  void Touch();
  int fd_;
  int64_t idle_timeout_ms_ = 0;
  std::atomic<int64_t> last_activity_ms_{0};
  HeaderDecoder decoder_;
  absl::Mutex write_mu_;
  z_stream deflate_ ABSL_GUARDED_BY(write_mu_){};
  bool closed_ ABSL_GUARDED_BY(write_mu_) = false;
};

}  // namespace berth::cri::spdy
