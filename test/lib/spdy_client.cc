#include "test/lib/spdy_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"
#include "absl/strings/ascii.h"

namespace berth::testing {
namespace {

// The SPDY/3 header dictionary (draft 3, 2.6.10.1): these names and values, each preceded by
// its length as 4 bytes, then a fixed run of status lines, dates and media types.
std::string Dictionary() {
  const char* words =
      "options|head|post|put|delete|trace|accept|accept-charset|accept-encoding|accept-language|"
      "accept-ranges|age|allow|authorization|cache-control|connection|content-base|"
      "content-encoding|content-language|content-length|content-location|content-md5|"
      "content-range|content-type|date|etag|expect|expires|from|host|if-match|"
      "if-modified-since|if-none-match|if-range|if-unmodified-since|last-modified|location|"
      "max-forwards|pragma|proxy-authenticate|proxy-authorization|range|referer|retry-after|"
      "server|te|trailer|transfer-encoding|upgrade|user-agent|vary|via|warning|www-authenticate|"
      "method|get|status|200 OK|version|HTTP/1.1|url|public|set-cookie|keep-alive|origin";
  std::string d;
  for (absl::string_view w : absl::StrSplit(words, '|')) {
    const uint32_t n = htonl(static_cast<uint32_t>(w.size()));
    d.append(reinterpret_cast<const char*>(&n), 4);
    d.append(w.data(), w.size());
  }
  d += "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504"
       "505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad "
       "Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not "
       "Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec "
       "00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,"
       "image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
       "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
  return d;
}

void Be32(std::string* out, uint32_t v) {
  const uint32_t n = htonl(v);
  out->append(reinterpret_cast<const char*>(&n), 4);
}

uint32_t ReadBe32(const char* p) {
  uint32_t n;
  std::memcpy(&n, p, 4);
  return ntohl(n);
}

bool ReadFull(int fd, char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::read(fd, buf + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SpdyClient>> SpdyClient::Connect(
    const std::string& url, const std::vector<std::string>& protocols, Upgrade* upgrade) {
  if (!absl::StartsWith(url, "http://")) return absl::InvalidArgumentError("not http: " + url);
  const std::string rest = url.substr(7);
  const size_t slash = rest.find('/');
  const std::string host_port = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError("no port in " + url);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect ", host_port, ": ", std::strerror(errno)));
  }
  std::string request = absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: ", host_port,
                                     "\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
  for (const std::string& p : protocols) absl::StrAppend(&request, "X-Stream-Protocol-Version: ", p, "\r\n");
  request += "Content-Length: 0\r\n\r\n";
  (void)!::write(fd, request.data(), request.size());
  std::string head;
  char c;
  while (!absl::EndsWith(head, "\r\n\r\n") && ::read(fd, &c, 1) == 1) head.push_back(c);
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &upgrade->http_status)) {
    ::close(fd);
    return absl::InternalError("no HTTP answer: " + head);
  }
  for (const std::string& line : lines) {
    if (absl::StartsWithIgnoreCase(line, "x-stream-protocol-version:")) {
      upgrade->protocol = std::string(absl::StripAsciiWhitespace(line.substr(line.find(':') + 1)));
    }
  }
  if (upgrade->http_status != 101) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) upgrade->body.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat("HTTP ", upgrade->http_status));
  }
  return std::unique_ptr<SpdyClient>(new SpdyClient(fd));
}

SpdyClient::SpdyClient(int fd) : fd_(fd) {
  const std::string dict = Dictionary();
  {
    absl::MutexLock lock(&write_mu_);
    deflateInit(&deflate_, Z_BEST_SPEED);
    deflateSetDictionary(&deflate_, reinterpret_cast<const Bytef*>(dict.data()),
                         static_cast<uInt>(dict.size()));
  }
  inflateInit(&inflate_);
  reader_ = std::thread([this] { ReadLoop(); });
}

SpdyClient::~SpdyClient() {
  ::shutdown(fd_, SHUT_RDWR);
  reader_.join();
  ::close(fd_);
  absl::MutexLock lock(&write_mu_);
  deflateEnd(&deflate_);
  inflateEnd(&inflate_);
}

std::string SpdyClient::Compress(const std::string& raw) {
  std::string out(raw.size() + 256, '\0');
  deflate_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  deflate_.avail_in = static_cast<uInt>(raw.size());
  deflate_.next_out = reinterpret_cast<Bytef*>(out.data());
  deflate_.avail_out = static_cast<uInt>(out.size());
  deflate(&deflate_, Z_SYNC_FLUSH);
  // erase, not resize: GCC 12 at -O2 cannot tell that this shrinks and warns of a huge memset.
  out.erase(out.size() - deflate_.avail_out);
  return out;
}

std::string SpdyClient::Inflate(const std::string& block) {
  std::string out;
  inflate_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block.data()));
  inflate_.avail_in = static_cast<uInt>(block.size());
  char buf[8192];
  for (;;) {
    inflate_.next_out = reinterpret_cast<Bytef*>(buf);
    inflate_.avail_out = sizeof buf;
    int rc = inflate(&inflate_, Z_SYNC_FLUSH);
    if (rc == Z_NEED_DICT) {
      const std::string dict = Dictionary();
      inflateSetDictionary(&inflate_, reinterpret_cast<const Bytef*>(dict.data()),
                           static_cast<uInt>(dict.size()));
      continue;
    }
    out.append(buf, sizeof buf - inflate_.avail_out);
    if (rc != Z_OK || (inflate_.avail_in == 0 && inflate_.avail_out != 0)) break;
  }
  return out;
}

absl::StatusOr<uint32_t> SpdyClient::Open(
    const std::vector<std::pair<std::string, std::string>>& headers) {
  uint32_t id;
  {
    absl::MutexLock lock(&write_mu_);
    id = next_stream_;
    next_stream_ += 2;
    std::string block;
    Be32(&block, static_cast<uint32_t>(headers.size()));
    for (const auto& [k, v] : headers) {
      Be32(&block, static_cast<uint32_t>(k.size()));
      block += k;
      Be32(&block, static_cast<uint32_t>(v.size()));
      block += v;
    }
    std::string payload;
    Be32(&payload, id);
    Be32(&payload, 0);                 // associated stream
    payload += std::string(2, '\0');   // priority, slot
    payload += Compress(block);
    std::string frame;
    Be32(&frame, 0x80030001);  // control, version 3, SYN_STREAM
    Be32(&frame, static_cast<uint32_t>(payload.size()));
    frame += payload;
    (void)!::send(fd_, frame.data(), frame.size(), MSG_NOSIGNAL);
  }
  absl::MutexLock lock(&mu_);
  auto replied = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return replied_[id] || closed_;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&replied), absl::Seconds(10)) || !replied_[id]) {
    return absl::DeadlineExceededError(absl::StrCat("no SYN_REPLY for stream ", id));
  }
  return id;
}

absl::Status SpdyClient::SendRaw(const std::string& bytes) {
  absl::MutexLock lock(&write_mu_);
  if (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    return absl::UnavailableError("send failed");
  }
  return absl::OkStatus();
}

absl::Status SpdyClient::SendSynStream(uint32_t stream, const std::string& raw_block) {
  absl::MutexLock lock(&write_mu_);
  std::string payload;
  Be32(&payload, stream);
  Be32(&payload, 0);
  payload += std::string(2, '\0');
  payload += Compress(raw_block);
  std::string frame;
  Be32(&frame, 0x80030001);
  Be32(&frame, static_cast<uint32_t>(payload.size()));
  frame += payload;
  if (::send(fd_, frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
    return absl::UnavailableError("send failed");
  }
  return absl::OkStatus();
}

absl::Status SpdyClient::Send(uint32_t stream, const std::string& data, bool fin) {
  std::string frame;
  Be32(&frame, stream & 0x7fffffff);
  Be32(&frame, (fin ? 0x01000000u : 0u) | static_cast<uint32_t>(data.size()));
  frame += data;
  absl::MutexLock lock(&write_mu_);
  if (::send(fd_, frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
    return absl::UnavailableError("send failed");
  }
  return absl::OkStatus();
}

std::optional<uint32_t> SpdyClient::GoAwayStatus() {
  absl::MutexLock lock(&mu_);
  return goaway_status_;
}

void SpdyClient::ReadLoop() {
  char head[8];
  for (;;) {
    if (!ReadFull(fd_, head, 8)) break;
    const uint32_t first = ReadBe32(head);
    const uint32_t second = ReadBe32(head + 4);
    const uint32_t length = second & 0xffffff;
    const bool fin = (second >> 24) & 0x01;
    std::string payload(length, '\0');
    if (!ReadFull(fd_, payload.data(), length)) break;
    if ((first & 0x80000000u) == 0) {
      absl::MutexLock lock(&mu_);
      data_[first] += payload;
      if (fin) ended_[first] = true;
      continue;
    }
    const uint32_t type = first & 0xffff;
    if (type == 2 && length >= 4) {  // SYN_REPLY
      const uint32_t id = ReadBe32(payload.data()) & 0x7fffffff;
      (void)Inflate(payload.substr(4));
      absl::MutexLock lock(&mu_);
      replied_[id] = true;
      if (fin) ended_[id] = true;
    } else if (type == 3 && length >= 4) {  // RST_STREAM
      absl::MutexLock lock(&mu_);
      ended_[ReadBe32(payload.data()) & 0x7fffffff] = true;
    } else if (type == 7) {  // GOAWAY
      if (length >= 8) {
        absl::MutexLock lock(&mu_);
        goaway_status_ = ReadBe32(payload.data() + 4);
      }
      break;
    }
  }
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

std::string SpdyClient::Received(uint32_t stream) {
  absl::MutexLock lock(&mu_);
  return data_[stream];
}

bool SpdyClient::AwaitEnd(uint32_t stream, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ended = [this, stream]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ended_[stream] || closed_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&ended), timeout);
}

bool SpdyClient::AwaitData(uint32_t stream, const std::string& substring, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return data_[stream].find(substring) != std::string::npos || closed_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&has), timeout) &&
         data_[stream].find(substring) != std::string::npos;
}

bool SpdyClient::AwaitClosed(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto closed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_; };
  return mu_.AwaitWithTimeout(absl::Condition(&closed), timeout);
}

}  // namespace berth::testing
