#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace berth::cri::streaming {

// TLS for the streaming server (OpenSSL): each accepted connection is decrypted into one end of
// a socket pair by a thread of its own, so the protocols above see a plain socket.
class TlsTerminator {
 public:
  // Loads the certificate chain and key. InvalidArgument naming the file that does not load.
  static absl::StatusOr<std::unique_ptr<TlsTerminator>> Create(const std::string& cert_file,
                                                               const std::string& key_file);
  ~TlsTerminator();

  // Performs the handshake on `fd` (which it then owns) and returns the plain end for the
  // protocols; the relay thread runs until either side closes. Unavailable if the handshake
  // fails (the connection is closed).
  absl::StatusOr<int> Wrap(int fd);

 private:
  explicit TlsTerminator(void* ctx) : ctx_(ctx) {}
  void* ctx_;  // SSL_CTX
};

}  // namespace berth::cri::streaming
