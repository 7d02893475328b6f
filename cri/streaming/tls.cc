#include "cri/streaming/tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"

namespace berth::cri::streaming {
namespace {

std::string OpenSslError() {
  char buf[256];
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  return buf;
}

// Moves bytes between the TLS connection and the plain socket until either side ends.
void Relay(SSL* ssl, int tls_fd, int plain) {
  char buf[32 << 10];
  for (;;) {
    pollfd fds[2] = {{tls_fd, POLLIN, 0}, {plain, POLLIN, 0}};
    // OpenSSL may hold decrypted bytes already: then there is no need to wait.
    if (SSL_pending(ssl) == 0 && ::poll(fds, 2, -1) < 0) break;
    if (SSL_pending(ssl) > 0 || (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      const int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) break;
      if (::send(plain, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(plain, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (SSL_write(ssl, buf, static_cast<int>(n)) <= 0) break;
    }
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
  ::close(tls_fd);
  ::shutdown(plain, SHUT_RDWR);
  ::close(plain);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsTerminator>> TlsTerminator::Create(const std::string& cert_file,
                                                                     const std::string& key_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("TLS: " + OpenSslError());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        absl::StrCat("streaming.tls_cert ", cert_file, ": ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        absl::StrCat("streaming.tls_key ", key_file, ": ", OpenSslError()));
  }
  return std::unique_ptr<TlsTerminator>(new TlsTerminator(ctx));
}

TlsTerminator::~TlsTerminator() { SSL_CTX_free(static_cast<SSL_CTX*>(ctx_)); }

std::unique_ptr<TlsTerminator::Session> TlsTerminator::NewSession(int fd) {
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ctx_));
  if (ssl != nullptr) SSL_set_fd(ssl, fd);
  return std::unique_ptr<Session>(new Session(ssl, fd));
}

TlsTerminator::Session::~Session() {
  if (ssl_ != nullptr) SSL_free(static_cast<SSL*>(ssl_));
  if (fd_ >= 0) ::close(fd_);
}

TlsTerminator::Session::Io TlsTerminator::Session::Result(int ret) {
  if (ret > 0) return Io::kDone;
  switch (SSL_get_error(static_cast<SSL*>(ssl_), ret)) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      error_ = "closed by the client";
      return Io::kFailed;
    default:
      error_ = OpenSslError();
      return Io::kFailed;
  }
}

TlsTerminator::Session::Io TlsTerminator::Session::Handshake() {
  if (ssl_ == nullptr) {
    error_ = "no TLS session";
    return Io::kFailed;
  }
  ERR_clear_error();
  return Result(SSL_accept(static_cast<SSL*>(ssl_)));
}

TlsTerminator::Session::Io TlsTerminator::Session::Peek(char* buf, size_t size, size_t* n) {
  ERR_clear_error();
  const int r = SSL_peek(static_cast<SSL*>(ssl_), buf, static_cast<int>(size));
  *n = r > 0 ? static_cast<size_t>(r) : 0;
  return Result(r);
}

TlsTerminator::Session::Io TlsTerminator::Session::Read(char* buf, size_t size, size_t* n) {
  ERR_clear_error();
  const int r = SSL_read(static_cast<SSL*>(ssl_), buf, static_cast<int>(size));
  *n = r > 0 ? static_cast<size_t>(r) : 0;
  return Result(r);
}

void TlsTerminator::Session::WriteAndClose(const std::string& data) {
  ERR_clear_error();
  SSL* ssl = static_cast<SSL*>(ssl_);
  if (SSL_write(ssl, data.data(), static_cast<int>(data.size())) > 0) SSL_shutdown(ssl);
}

absl::StatusOr<int> TlsTerminator::Session::StartRelay() {
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return absl::InternalError(absl::StrCat("socketpair for TLS: ", std::strerror(errno)));
  }
  SSL* ssl = static_cast<SSL*>(ssl_);
  const int fd = fd_;
  try {
    std::thread(Relay, ssl, fd, pair[0]).detach();
  } catch (const std::system_error& e) {
    ::close(pair[0]);
    ::close(pair[1]);
    return absl::ResourceExhaustedError(absl::StrCat("no thread for a TLS relay: ", e.what()));
  }
  ssl_ = nullptr;  // the relay frees both
  fd_ = -1;
  return pair[1];
}

}  // namespace berth::cri::streaming
