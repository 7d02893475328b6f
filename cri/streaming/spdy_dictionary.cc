// The zlib dictionary SPDY/3 header blocks are compressed with (SPDY draft 3, section 2.6.10.1):
// the header names and values the draft lists, each as a 4-byte big-endian length and the
// bytes, followed by a run of common status codes, dates and content types.

#include "cri/streaming/spdy.h"

namespace berth::cri::spdy {
namespace {

constexpr const char* kWords[] = {
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
    "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
    "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
    "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server", "te",
    "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin"};

constexpr char kTail[] =
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, "
    "Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch"
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

}  // namespace

const std::string& HeaderDictionary() {
  static const std::string kDictionary = [] {
    std::string d;
    for (const char* word : kWords) {
      const std::string w(word);
      const uint32_t n = static_cast<uint32_t>(w.size());
      d += static_cast<char>(n >> 24);
      d += static_cast<char>(n >> 16);
      d += static_cast<char>(n >> 8);
      d += static_cast<char>(n);
      d += w;
    }
    d += kTail;
    return d;
  }();
  return kDictionary;
}

}  // namespace berth::cri::spdy
