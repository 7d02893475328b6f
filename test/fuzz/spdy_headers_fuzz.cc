// SPDY/3 header blocks through one HeaderDecoder, as the blocks of a session's SYN_STREAM and
// HEADERS frames. The first byte picks the form: even, the blocks are taken as compressed (zlib
// itself is fuzzed); odd, they are the decompressed blocks and are compressed here first with the
// SPDY dictionary, as a client would (the header block parsing is fuzzed). Then come the blocks,
// each after its length in two bytes (big-endian).

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "cri/streaming/spdy.h"
#include "fuzz_check.h"

namespace spdy = berth::cri::spdy;

namespace {

// One deflate context across the blocks, flushed after each: what a SPDY client sends.
class Compressor {
 public:
  Compressor() {
    deflateInit(&z_, Z_DEFAULT_COMPRESSION);
    const std::string& dict = spdy::HeaderDictionary();
    deflateSetDictionary(&z_, reinterpret_cast<const Bytef*>(dict.data()),
                         static_cast<uInt>(dict.size()));
  }
  ~Compressor() { deflateEnd(&z_); }
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  std::string Compress(const std::string& raw) {
    std::string out;
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
    z_.avail_in = static_cast<uInt>(raw.size());
    char buf[4096];
    do {
      z_.next_out = reinterpret_cast<Bytef*>(buf);
      z_.avail_out = sizeof buf;
      deflate(&z_, Z_SYNC_FLUSH);
      out.append(buf, sizeof buf - z_.avail_out);
    } while (z_.avail_out == 0);
    return out;
  }

 private:
  z_stream z_{};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool compress = (data[0] & 1) != 0;
  std::vector<std::string> blocks;
  for (size_t at = 1; at < size;) {
    size_t n = data[at] << 8;
    if (at + 1 < size) n |= data[at + 1];
    at += 2;
    n = std::min(n, size > at ? size - at : 0);
    blocks.emplace_back(reinterpret_cast<const char*>(data) + std::min(at, size), n);
    at += n;
  }
  Compressor compressor;
  spdy::HeaderDecoder decoder;
  for (const std::string& block : blocks) {
    spdy::Headers headers;
    const absl::Status s = decoder.Decode(compress ? compressor.Compress(block) : block, &headers);
    if (!s.ok()) break;  // the decoder is done with; so is a session
    FUZZ_CHECK(headers.size() <= 256);
    for (const auto& [name, value] : headers) {
      FUZZ_CHECK(name == absl::AsciiStrToLower(name));
      (void)spdy::HeaderValue(headers, name);
    }
  }
  return 0;
}
