#include "cri/streaming/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

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

absl::StatusOr<int> TlsTerminator::Wrap(int fd) {
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ctx_));
  SSL_set_fd(ssl, fd);
  timeval handshake_timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &handshake_timeout, sizeof handshake_timeout);
  if (SSL_accept(ssl) != 1) {
    const std::string why = OpenSslError();
    SSL_free(ssl);
    ::close(fd);
    return absl::UnavailableError("TLS handshake: " + why);
  }
  timeval none{0, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    SSL_free(ssl);
    ::close(fd);
    return absl::InternalError("socketpair for TLS");
  }
  std::thread(Relay, ssl, fd, pair[0]).detach();
  return pair[1];
}

}  // namespace berth::cri::streaming
