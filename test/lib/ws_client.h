#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace berth::testing {

// A WebSocket client for the Kubernetes channel protocols, on Boost.Beast (not the server's
// code): connects with the offered subprotocols, sends channel-prefixed binary messages, and
// collects what arrives per channel. Thread-safe.
class WsClient {
 public:
  // `url` is http://host:port/path. FailedPrecondition with the HTTP status if refused.
  static absl::StatusOr<std::unique_ptr<WsClient>> Connect(const std::string& url,
                                                           const std::vector<std::string>& protocols);
  ~WsClient();

  const std::string& protocol() const { return protocol_; }
  absl::Status Send(unsigned char channel, const std::string& data);
  std::string Received(unsigned char channel);
  bool AwaitData(unsigned char channel, const std::string& substring, absl::Duration timeout);
  bool AwaitClosed(absl::Duration timeout);

 private:
  struct Impl;
  explicit WsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string protocol_;
};

}  // namespace berth::testing
