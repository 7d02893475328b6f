#pragma once

#include <zlib.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace berth::testing {

// A SPDY/3.1 client for tests, written from the SPDY draft and Kubernetes' stream protocols
// without the server's code: the HTTP upgrade, SYN_STREAM with compressed headers, data frames,
// and what the server sends back, collected per stream. Thread-safe.
class SpdyClient {
 public:
  struct Upgrade {
    int http_status = 0;      // 101 on success
    std::string protocol;     // X-Stream-Protocol-Version chosen by the server
    std::string body;         // of a refusal
  };

  // POSTs to `url` (http://host:port/path) asking to upgrade to SPDY/3.1 with `protocols`.
  // On 101 the client is ready; otherwise *upgrade says what the server answered and the result
  // is FailedPrecondition.
  static absl::StatusOr<std::unique_ptr<SpdyClient>> Connect(const std::string& url,
                                                             const std::vector<std::string>& protocols,
                                                             Upgrade* upgrade);
  ~SpdyClient();

  // Opens a stream with these headers and waits (up to 10 s) for the server's SYN_REPLY.
  absl::StatusOr<uint32_t> Open(const std::vector<std::pair<std::string, std::string>>& headers);
  absl::Status Send(uint32_t stream, const std::string& data, bool fin = false);

  // For hostile-input tests, neither waits for an answer: bytes written as they are, and a
  // SYN_STREAM for `stream` whose name/value block (given uncompressed, any bytes) is compressed
  // with the session's dictionary.
  absl::Status SendRaw(const std::string& bytes);
  absl::Status SendSynStream(uint32_t stream, const std::string& raw_block);

  std::string Received(uint32_t stream);
  // Waits until the stream ended (FIN or reset) or the connection closed.
  bool AwaitEnd(uint32_t stream, absl::Duration timeout);
  bool AwaitData(uint32_t stream, const std::string& substring, absl::Duration timeout);
  // Waits until the server closed the connection (or sent GOAWAY).
  bool AwaitClosed(absl::Duration timeout);
  // The status of the server's GOAWAY (0 OK, 1 PROTOCOL_ERROR), once one came.
  std::optional<uint32_t> GoAwayStatus();

 private:
  explicit SpdyClient(int fd);
  void ReadLoop();
  std::string Compress(const std::string& raw) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  std::string Inflate(const std::string& block);

  int fd_;
  absl::Mutex write_mu_;
  z_stream deflate_ ABSL_GUARDED_BY(write_mu_){};
  uint32_t next_stream_ ABSL_GUARDED_BY(write_mu_) = 1;
  z_stream inflate_{};  // reader thread only
  absl::Mutex mu_;
  std::map<uint32_t, std::string> data_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, bool> ended_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, bool> replied_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<uint32_t> goaway_status_ ABSL_GUARDED_BY(mu_);
  std::thread reader_;
};

}  // namespace berth::testing
