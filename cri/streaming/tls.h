#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace berth::cri::streaming {

// TLS for the streaming server (OpenSSL). The gate drives each connection's handshake and
// request head on a non-blocking socket; a connection that gets a session is then decrypted into
// one end of a socket pair by a relay thread of its own, so the protocols above see a plain
// socket.
class TlsTerminator {
 public:
  // One connection's TLS session.
  class Session {
   public:
    enum class Io { kDone, kWantRead, kWantWrite, kFailed };
    ~Session();  // closes the connection unless a relay took it
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    int fd() const { return fd_; }
    Io Handshake();
    // Decrypted bytes, like recv() with and without MSG_PEEK: kDone with *n > 0, kWantRead or
    // kWantWrite to wait, kFailed when the connection ended.
    Io Peek(char* buf, size_t size, size_t* n);
    Io Read(char* buf, size_t size, size_t* n);
    // Writes what fits without waiting and closes the TLS session.
    void WriteAndClose(const std::string& data);
    // Makes the socket blocking and starts the relay thread: the plain end for the protocols.
    // The session is spent either way.
    absl::StatusOr<int> StartRelay();
    // Why the last step failed.
    std::string error() const { return error_; }

   private:
    friend class TlsTerminator;
    Session(void* ssl, int fd) : ssl_(ssl), fd_(fd) {}
    Io Result(int ret);
    void* ssl_;  // SSL
    int fd_;
    std::string error_;
  };

  // Loads the certificate chain and key. InvalidArgument naming the file that does not load.
  static absl::StatusOr<std::unique_ptr<TlsTerminator>> Create(const std::string& cert_file,
                                                               const std::string& key_file);
  ~TlsTerminator();

  // A session on the non-blocking socket `fd`, which it owns from now on.
  std::unique_ptr<Session> NewSession(int fd);

 private:
  explicit TlsTerminator(void* ctx) : ctx_(ctx) {}
  void* ctx_;  // SSL_CTX
};

}  // namespace berth::cri::streaming
