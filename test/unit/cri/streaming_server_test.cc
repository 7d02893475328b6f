// The streaming server's front door, without containers: tokens (one use, a lifetime), the
// upgrade checks, and TLS.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cri/streaming/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/lib/eventually.h"

namespace berth::cri::streaming {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::berth::testing::Eventually;

int Port(const std::string& url) {
  int port = 0;
  (void)absl::SimpleAtoi(url.substr(url.rfind(':') + 1, url.find('/', 8) - url.rfind(':') - 1),
                         &port);
  return port;
}

std::string PathOf(const std::string& url) { return url.substr(url.find('/', 8)); }

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

// One plain HTTP request; the response's head.
std::string Ask(int port, const std::string& request) {
  const int fd = Connect(port);
  (void)!::write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

std::string SpdyUpgrade(const std::string& path) {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v1.channel.k8s.io\r\n\r\n");
}

TEST(StreamingServerTest, TokensAreForOneUseAndExpire) {
  config::StreamingConfig config;
  Server server(config, nullptr, nullptr, absl::Milliseconds(300));
  ASSERT_TRUE(server.Start().ok());
  EXPECT_THAT(server.base_url(), StartsWith("http://127.0.0.1:"));
  const std::string url = server.Register({.kind = Request::Kind::kExec, .id = "c", .cmd = {"ls"}});
  EXPECT_THAT(url, StartsWith(server.base_url() + "/exec/"));
  // A protocol the server does not speak: refused, and the token is used up.
  EXPECT_THAT(Ask(Port(url), SpdyUpgrade(PathOf(url))), StartsWith("HTTP/1.1 403"));
  EXPECT_THAT(Ask(Port(url), SpdyUpgrade(PathOf(url))), StartsWith("HTTP/1.1 404"));
  // Another verb's path with a valid token: not found either.
  const std::string attach = server.Register({.kind = Request::Kind::kAttach, .id = "c"});
  std::string wrong = PathOf(attach);
  wrong.replace(1, 6, "exec");
  EXPECT_THAT(Ask(Port(url), SpdyUpgrade(wrong)), StartsWith("HTTP/1.1 404"));
  // Expired.
  const std::string late = server.Register({.kind = Request::Kind::kExec, .id = "c", .cmd = {"ls"}});
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string answer = Ask(Port(late), SpdyUpgrade(PathOf(late)));
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(answer, HasSubstr("unknown or expired"));
  // No upgrade at all.
  const std::string plain = server.Register({.kind = Request::Kind::kExec, .id = "c", .cmd = {"ls"}});
  EXPECT_THAT(Ask(Port(plain), absl::StrCat("GET ", PathOf(plain), " HTTP/1.1\r\n\r\n")),
              StartsWith("HTTP/1.1 400"));
  server.Stop();
}

// Seconds until the server closes a connection that keeps sending its request head a byte at a
// time (or stop_after seconds, if it does not).
double SecondsUntilClosed(int port, int stop_after) {
  const int fd = Connect(port);
  const auto start = std::chrono::steady_clock::now();
  const std::string head = "GET /exec/x HTTP/1.1\r\nX-Slow: ";
  for (int i = 0; i < stop_after * 2; ++i) {
    const char c = i < static_cast<int>(head.size()) ? head[static_cast<size_t>(i)] : 'a';
    if (::send(fd, &c, 1, MSG_NOSIGNAL) != 1) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 500) > 0) {
      char buf[64];
      if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
    }
  }
  ::close(fd);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(StreamingServerTest, ASlowRequestHeadIsCutOffAtItsDeadline) {
  config::StreamingConfig config;
  Server server(config, nullptr, nullptr, absl::Minutes(1));
  ASSERT_TRUE(server.Start().ok());
  // The whole head has 10 s; a byte every half second used to keep it open forever.
  EXPECT_LT(SecondsUntilClosed(Port(server.base_url() + "/"), 20), 15.0);
  server.Stop();
}

TEST(StreamingServerTest, ConnectionsBeyondTheBoundAreRefused) {
  config::StreamingConfig config;
  Server server(config, nullptr, nullptr, absl::Minutes(1));
  ASSERT_TRUE(server.Start().ok());
  const int port = Port(server.base_url() + "/");
  std::vector<int> idle;
  for (int i = 0; i < 256; ++i) idle.push_back(Connect(port));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // all accepted
  const int extra = Connect(port);
  pollfd p{extra, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1) << "the connection beyond the bound is still open";
  char c;
  EXPECT_EQ(::recv(extra, &c, 1, 0), 0);
  ::close(extra);
  for (int fd : idle) ::close(fd);
  // Once they are gone, the server takes connections again.
  const std::string url = server.Register({.kind = Request::Kind::kExec, .id = "c", .cmd = {"ls"}});
  EXPECT_TRUE(Eventually([&] {
    return absl::StartsWith(Ask(Port(url), SpdyUpgrade("/exec/unknown")), "HTTP/1.1 404");
  }));
  server.Stop();
}

size_t Threads() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                           std::filesystem::directory_iterator()));
}

// Connections that have not shown a token yet (idle, half a head, half a TLS handshake) are all
// served by the one gate thread: they cost no thread, and a real request still gets its answer.
void ExpectWaitingConnectionsCostNoThread(Server& server, const std::string& first_bytes) {
  const int port = Port(server.base_url() + "/");
  const size_t before = Threads();
  std::vector<int> waiting;
  for (int i = 0; i < 100; ++i) {
    waiting.push_back(Connect(port));
    if (!first_bytes.empty()) {
      ASSERT_EQ(::send(waiting.back(), first_bytes.data(), first_bytes.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(first_bytes.size()));
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // all accepted and read
  EXPECT_LE(Threads(), before + 1);
  for (int fd : waiting) ::close(fd);
}

TEST(StreamingServerTest, ConnectionsWaitingForTheirHeadCostNoThread) {
  config::StreamingConfig config;
  Server server(config, nullptr, nullptr, absl::Minutes(1));
  ASSERT_TRUE(server.Start().ok());
  ExpectWaitingConnectionsCostNoThread(server, "");
  ExpectWaitingConnectionsCostNoThread(server, "POST /exec/x HTTP/1.1\r\nHost: x\r\n");
  const std::string url = server.Register({.kind = Request::Kind::kExec, .id = "c", .cmd = {"ls"}});
  EXPECT_THAT(Ask(Port(url), SpdyUpgrade(PathOf(url))), StartsWith("HTTP/1.1 403"));
  server.Stop();
}

// A self-signed certificate for 127.0.0.1, written as PEM files.
void WriteCertificate(const std::string& cert_path, const std::string& key_path) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  FILE* f = std::fopen(cert_path.c_str(), "w");
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
}

TEST(StreamingServerTest, ServesOverTls) {
  char tmpl[] = "/tmp/berth-streaming-tls.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  WriteCertificate(dir + "/cert.pem", dir + "/key.pem");
  config::StreamingConfig config;
  config.tls_cert = dir + "/cert.pem";
  config.tls_key = dir + "/key.pem";
  Server server(config, nullptr, nullptr);
  ASSERT_TRUE(server.Start().ok());
  EXPECT_THAT(server.base_url(), StartsWith("https://127.0.0.1:"));
  const std::string url = server.Register({.kind = Request::Kind::kExec, .id = "c", .cmd = {"ls"}});

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  const int fd = Connect(Port(url));
  SSL_set_fd(ssl, fd);
  ASSERT_EQ(SSL_connect(ssl), 1);
  const std::string request = SpdyUpgrade(PathOf(url));
  ASSERT_GT(SSL_write(ssl, request.data(), static_cast<int>(request.size())), 0);
  char buf[512];
  const int n = SSL_read(ssl, buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_THAT(std::string(buf, static_cast<size_t>(n)), StartsWith("HTTP/1.1 403"));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);

  // Half a TLS ClientHello, or nothing at all, holds no thread either.
  ExpectWaitingConnectionsCostNoThread(server, "");
  ExpectWaitingConnectionsCostNoThread(server, std::string("\x16\x03\x01\x02\x00\x01", 6));

  // A key that does not match is refused at start.
  WriteCertificate(dir + "/other.pem", dir + "/other-key.pem");
  config.tls_key = dir + "/other-key.pem";
  Server mismatched(config, nullptr, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(mismatched.Start()));
  server.Stop();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace berth::cri::streaming
