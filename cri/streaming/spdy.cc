#include "cri/streaming/spdy.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace berth::cri::spdy {
namespace {

constexpr uint16_t kVersion = 3;
constexpr uint16_t kSynStream = 1, kSynReply = 2, kRstStream = 3, kSettings = 4, kPing = 6,
                   kGoAway = 7, kHeaders = 8, kWindowUpdate = 9;
constexpr uint8_t kFlagFin = 0x01;
// Kubernetes clients send data in chunks of 32 KiB; a frame is read whole, so this bounds what
// one connection can make us hold (SPDY itself allows 16 MiB).
constexpr uint32_t kMaxFrame = 1 << 20;
constexpr size_t kMaxDataChunk = 32 << 10;
// A decompressed header block, and the headers in it: the Kubernetes clients send a handful of
// short headers per stream; a few KiB of compressed input must not expand beyond this.
constexpr size_t kMaxHeaderBlock = 64 << 10;
constexpr size_t kMaxHeaders = 256;

void Put32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

uint32_t Get32(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) | (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}

std::string FrameHeader(bool control, uint32_t first, uint8_t flags, size_t length) {
  std::string h;
  Put32(&h, control ? (0x80000000u | (uint32_t{kVersion} << 16) | first) : (first & 0x7fffffff));
  Put32(&h, (uint32_t{flags} << 24) | static_cast<uint32_t>(length));
  return h;
}

}  // namespace

std::string HeaderValue(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, absl::string_view(name.data(), name.size()))) return v;
  }
  return "";
}

Session::Session(int fd) : fd_(fd) {
  Touch();
  absl::MutexLock lock(&write_mu_);
  deflateInit(&deflate_, Z_DEFAULT_COMPRESSION);
  const std::string& dict = HeaderDictionary();
  deflateSetDictionary(&deflate_, reinterpret_cast<const Bytef*>(dict.data()),
                       static_cast<uInt>(dict.size()));
}

Session::~Session() {
  {
    absl::MutexLock lock(&write_mu_);
    deflateEnd(&deflate_);
  }
  ::close(fd_);
}

static int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Session::Touch() { last_activity_ms_ = NowMs(); }

absl::Status Session::ReadFull(char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    if (idle_timeout_ms_ > 0) {
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(idle_timeout_ms_, 1000)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        if (NowMs() - last_activity_ms_ >= idle_timeout_ms_) {
          return absl::DeadlineExceededError("the stream was idle for too long");
        }
        continue;
      }
    }
    const ssize_t r = ::read(fd_, buf + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return absl::UnavailableError(absl::StrCat("read: ", std::strerror(errno)));
    if (r == 0) return absl::CancelledError("the peer closed the connection");
    done += static_cast<size_t>(r);
    Touch();
  }
  return absl::OkStatus();
}

absl::Status Session::WriteLocked(const std::string& frame) {
  if (closed_) return absl::CancelledError("the session is closed");
  Touch();
  size_t done = 0;
  while (done < frame.size()) {
    const ssize_t w = ::send(fd_, frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return absl::UnavailableError(absl::StrCat("write: ", std::strerror(errno)));
    done += static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status Session::Control(uint16_t type, uint8_t flags, const std::string& payload) {
  absl::MutexLock lock(&write_mu_);
  return WriteLocked(FrameHeader(true, type, flags, payload.size()) + payload);
}

std::string Session::EncodeHeaders(const Headers& headers) {
  std::string raw;
  Put32(&raw, static_cast<uint32_t>(headers.size()));
  for (const auto& [k, v] : headers) {
    Put32(&raw, static_cast<uint32_t>(k.size()));
    raw += absl::AsciiStrToLower(k);
    Put32(&raw, static_cast<uint32_t>(v.size()));
    raw += v;
  }
  std::string out;
  deflate_.next_in = reinterpret_cast<Bytef*>(raw.data());
  deflate_.avail_in = static_cast<uInt>(raw.size());
  char buf[4096];
  do {
    deflate_.next_out = reinterpret_cast<Bytef*>(buf);
    deflate_.avail_out = sizeof buf;
    deflate(&deflate_, Z_SYNC_FLUSH);
    out.append(buf, sizeof buf - deflate_.avail_out);
  } while (deflate_.avail_out == 0);
  return out;
}

HeaderDecoder::HeaderDecoder() { inflateInit(&inflate_); }

HeaderDecoder::~HeaderDecoder() { inflateEnd(&inflate_); }

absl::Status HeaderDecoder::Decode(std::string_view block, Headers* out) {
  std::string raw;
  inflate_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block.data()));
  inflate_.avail_in = static_cast<uInt>(block.size());
  char buf[4096];
  do {
    inflate_.next_out = reinterpret_cast<Bytef*>(buf);
    inflate_.avail_out = sizeof buf;
    int rc = inflate(&inflate_, Z_SYNC_FLUSH);
    if (rc == Z_NEED_DICT) {
      const std::string& dict = HeaderDictionary();
      if (inflateSetDictionary(&inflate_, reinterpret_cast<const Bytef*>(dict.data()),
                               static_cast<uInt>(dict.size())) != Z_OK) {
        return absl::InvalidArgumentError("spdy: the header block uses another dictionary");
      }
      rc = inflate(&inflate_, Z_SYNC_FLUSH);
    }
    // SPDY's header compression is one endless zlib stream: its end means no later header
    // block can be read (and inflate would make no progress on one).
    if (rc == Z_STREAM_END) return absl::InvalidArgumentError("spdy: the header stream ended");
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return absl::InvalidArgumentError("spdy: the header block does not decompress");
    }
    raw.append(buf, sizeof buf - inflate_.avail_out);
    if (raw.size() > kMaxHeaderBlock) {
      return absl::InvalidArgumentError("spdy: header block too large");
    }
    if (rc == Z_BUF_ERROR && inflate_.avail_out != 0) break;  // no progress: all consumed
  } while (inflate_.avail_in > 0 || inflate_.avail_out == 0);
  size_t at = 0;
  auto take32 = [&](uint32_t* v) {
    if (raw.size() - at < 4) return false;
    *v = Get32(raw.data() + at);
    at += 4;
    return true;
  };
  uint32_t count = 0;
  if (!take32(&count)) return absl::InvalidArgumentError("spdy: truncated header block");
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t n = 0;
    if (!take32(&n) || raw.size() - at < n) return absl::InvalidArgumentError("spdy: bad header name");
    std::string name = raw.substr(at, n);
    at += n;
    if (!take32(&n) || raw.size() - at < n) return absl::InvalidArgumentError("spdy: bad header value");
    std::string value = raw.substr(at, n);
    at += n;
    // A name may carry several values separated by NUL.
    for (size_t start = 0;;) {
      if (out->size() >= kMaxHeaders) return absl::InvalidArgumentError("spdy: too many headers");
      const size_t nul = value.find('\0', start);
      out->emplace_back(absl::AsciiStrToLower(name), value.substr(start, nul - start));
      if (nul == std::string::npos) break;
      start = nul + 1;
    }
  }
  return absl::OkStatus();
}

absl::Status Session::Run(const Handlers& handlers) {
  absl::Status s = ReadFrames(handlers);
  // A peer that broke the protocol is told so before the connection goes.
  if (absl::IsInvalidArgument(s)) Close(kGoAwayProtocolError);
  return s;
}

absl::Status Session::ReadFrames(const Handlers& handlers) {
  char head[8];
  std::string payload;
  for (;;) {
    absl::Status s = ReadFull(head, 8);
    if (absl::IsCancelled(s)) return absl::OkStatus();
    if (!s.ok()) return s;
    const uint32_t first = Get32(head);
    const uint8_t flags = static_cast<uint8_t>(head[4]);
    const uint32_t length = Get32(head + 4) & 0xffffff;
    if (length > kMaxFrame) return absl::InvalidArgumentError("spdy: frame too large");
    payload.resize(length);
    s = ReadFull(payload.data(), length);
    if (absl::IsCancelled(s)) return absl::OkStatus();
    if (!s.ok()) return s;
    if ((first & 0x80000000u) == 0) {  // data frame
      const uint32_t stream = first & 0x7fffffff;
      if (handlers.on_data) handlers.on_data(stream, payload, (flags & kFlagFin) != 0);
      if (length > 0) {
        std::string update;
        Put32(&update, stream);
        Put32(&update, length);
        (void)Control(kWindowUpdate, 0, update);
      }
      continue;
    }
    const uint16_t version = (first >> 16) & 0x7fff;
    const uint16_t type = first & 0xffff;
    if (version != kVersion) return absl::InvalidArgumentError("spdy: not version 3");
    switch (type) {
      case kSynStream: {
        if (length < 10) return absl::InvalidArgumentError("spdy: short SYN_STREAM");
        const uint32_t stream = Get32(payload.data()) & 0x7fffffff;
        Headers headers;
        absl::Status d = decoder_.Decode(std::string_view(payload).substr(10), &headers);
        if (!d.ok()) {
          (void)Reset(stream, kProtocolError);
          return d;
        }
        if (handlers.on_stream) handlers.on_stream(stream, headers, (flags & kFlagFin) != 0);
        break;
      }
      case kRstStream:
        if (length >= 8 && handlers.on_reset) handlers.on_reset(Get32(payload.data()) & 0x7fffffff);
        break;
      case kPing:
        if (absl::Status p = Control(kPing, 0, payload); !p.ok()) return p;
        break;
      case kGoAway:
        return absl::OkStatus();
      case kSynReply:
      case kHeaders:
        if (length >= 4) {
          Headers ignored;  // keep the shared zlib context in step
          RETURN_IF_ERROR(decoder_.Decode(std::string_view(payload).substr(4), &ignored));
        }
        break;
      case kSettings:
      case kWindowUpdate:
      default:
        break;
    }
  }
}

absl::Status Session::Reply(uint32_t stream, const Headers& headers, bool fin) {
  absl::MutexLock lock(&write_mu_);
  std::string payload;
  Put32(&payload, stream);
  payload += EncodeHeaders(headers);
  return WriteLocked(FrameHeader(true, kSynReply, fin ? kFlagFin : 0, payload.size()) + payload);
}

absl::Status Session::Data(uint32_t stream, std::string_view data, bool fin) {
  absl::MutexLock lock(&write_mu_);
  do {
    const std::string_view chunk = data.substr(0, kMaxDataChunk);
    data.remove_prefix(chunk.size());
    const bool last = data.empty();
    std::string frame = FrameHeader(false, stream, last && fin ? kFlagFin : 0, chunk.size());
    frame.append(chunk);
    if (absl::Status s = WriteLocked(frame); !s.ok()) return s;
  } while (!data.empty());
  return absl::OkStatus();
}

absl::Status Session::Reset(uint32_t stream, uint32_t status) {
  std::string payload;
  Put32(&payload, stream);
  Put32(&payload, status);
  return Control(kRstStream, 0, payload);
}

void Session::Close(uint32_t status) {
  std::string payload;
  Put32(&payload, 0);
  Put32(&payload, status);
  absl::MutexLock lock(&write_mu_);
  (void)WriteLocked(FrameHeader(true, kGoAway, 0, payload.size()) + payload);
  closed_ = true;
  ::shutdown(fd_, SHUT_RDWR);
}

}  // namespace berth::cri::spdy
