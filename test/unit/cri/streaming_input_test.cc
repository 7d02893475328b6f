// What a streaming client sends, at its worst: resize messages of the wrong shape, stdin nobody
// takes yet, and SPDY header blocks that never end or expand without bound.

#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "cri/streaming/spdy.h"
#include "cri/streaming/transport.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::cri::streaming {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::vector<std::pair<unsigned, unsigned>> Sizes(const std::vector<std::string>& messages) {
  Inbound in;
  std::vector<std::pair<unsigned, unsigned>> sizes;
  in.Connect([](std::string_view) {}, [] {}, [&](unsigned w, unsigned h) { sizes.emplace_back(w, h); },
             nullptr);
  for (const std::string& m : messages) in.ResizeJson(m);
  in.Clear();
  return sizes;
}

TEST(InboundTest, ResizeMessagesOfTheWrongShapeAreIgnored) {
  EXPECT_THAT(Sizes({R"({"Width":"80","Height":24})", R"({"Width":-1,"Height":24})",
                     R"({"Width":1e30,"Height":24})", R"({"Width":18446744073709551615,"Height":1})",
                     R"({"Width":70000,"Height":24})", R"({"Width":80})", R"([1,2]})",
                     R"({"Width":{"a":1},"Height":2})", R"(not json})", R"({"Width":120,"Height":40})"}),
              ElementsAre(Pair(120u, 40u)));
}

TEST(InboundTest, ResizeMessagesSplitAndConcatenated) {
  EXPECT_THAT(Sizes({R"({"Wid)", R"(th":80,"Height":24}{"Width":100,)", R"("Height":30})"}),
              ElementsAre(Pair(80u, 24u), Pair(100u, 30u)));
}

TEST(InboundTest, AnEndlessResizeMessageIsDropped) {
  // Without the bound the garbage would stay in front of the valid message and spoil it.
  EXPECT_THAT(Sizes({std::string(64 << 10, '{'), R"({"Width":80,"Height":24})"}),
              ElementsAre(Pair(80u, 24u)));
}

TEST(InboundTest, StdinBeyondTheBoundBeforeTheProcessEndsTheSession) {
  Inbound in;
  const std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 4; ++i) in.Stdin(chunk);
  EXPECT_FALSE(in.gone());
  in.Stdin(chunk);
  EXPECT_TRUE(in.gone());
  bool killed = false;
  size_t delivered = 0;
  in.Connect([&](std::string_view d) { delivered += d.size(); }, [] {}, nullptr,
             [&] { killed = true; });
  EXPECT_TRUE(killed);
  EXPECT_EQ(delivered, 0u);
  in.Clear();
}

void Put32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

// A SYN_STREAM for stream 1 whose header block is `raw` compressed with SPDY's dictionary,
// `flush` ending the compressed block, then `trailer` appended to it.
std::string SynStream(const std::string& raw, int flush, const std::string& trailer = "") {
  z_stream z{};
  deflateInit(&z, Z_DEFAULT_COMPRESSION);
  const std::string& dict = spdy::HeaderDictionary();
  deflateSetDictionary(&z, reinterpret_cast<const Bytef*>(dict.data()), static_cast<uInt>(dict.size()));
  std::string block(deflateBound(&z, raw.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(block.data());
  z.avail_out = static_cast<uInt>(block.size());
  EXPECT_NE(deflate(&z, flush), Z_STREAM_ERROR);
  block.erase(block.size() - z.avail_out);  // not resize: GCC 12 -O2 false -Wstringop-overflow
  deflateEnd(&z);
  block += trailer;
  std::string payload;
  Put32(&payload, 1);  // stream id
  Put32(&payload, 0);  // associated stream
  payload += std::string(2, '\0');  // priority, slot
  payload += block;
  std::string frame;
  Put32(&frame, 0x80000000u | (3u << 16) | 1u);  // control, version 3, SYN_STREAM
  Put32(&frame, static_cast<uint32_t>(payload.size()));
  return frame + payload;
}

std::string HeaderBlock(const std::vector<std::pair<std::string, std::string>>& headers,
                        uint32_t count) {
  std::string raw;
  Put32(&raw, count);
  for (const auto& [k, v] : headers) {
    Put32(&raw, static_cast<uint32_t>(k.size()));
    raw += k;
    Put32(&raw, static_cast<uint32_t>(v.size()));
    raw += v;
  }
  return raw;
}

// Runs a session on one end of a socket pair, writes `input` to the other; how Run() ended and
// the headers of every stream it accepted. Fails (instead of hanging) if Run() does not end.
std::pair<absl::Status, spdy::Headers> Serve(const std::string& input) {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  spdy::Session session(fds[0]);
  spdy::Headers seen;
  auto run = std::async(std::launch::async, [&] {
    return session.Run({.on_stream = [&](uint32_t, const spdy::Headers& h, bool) {
      seen.insert(seen.end(), h.begin(), h.end());
    }});
  });
  EXPECT_EQ(::write(fds[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
  ::shutdown(fds[1], SHUT_WR);
  // Drain what the session answers so its writes never block.
  auto drain = std::async(std::launch::async, [fd = fds[1]] {
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
  });
  const bool ended = run.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  EXPECT_TRUE(ended) << "the session is still reading";
  session.Close();  // also ends the drain
  absl::Status status = run.get();
  ::close(fds[1]);
  drain.wait();
  return {status, seen};
}

TEST(SpdyInputTest, AWellFormedHeaderBlockIsRead) {
  auto [status, headers] = Serve(SynStream(HeaderBlock({{"StreamType", "stdin"}}, 1), Z_SYNC_FLUSH));
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(headers, ElementsAre(Pair("streamtype", "stdin")));
}

TEST(SpdyInputTest, AHeaderStreamThatEndsIsAnErrorNotALoop) {
  auto [status, headers] =
      Serve(SynStream(HeaderBlock({{"streamtype", "stdin"}}, 1), Z_FINISH, "trailing bytes"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("header stream ended"));
  EXPECT_TRUE(headers.empty());
}

TEST(SpdyInputTest, AHeaderBlockThatExpandsTooFarIsRefused) {
  // A megabyte of one byte compresses to about a kilobyte.
  auto [status, headers] =
      Serve(SynStream(HeaderBlock({{"a", std::string(1 << 20, 'a')}}, 1), Z_SYNC_FLUSH));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("too large"));
}

TEST(SpdyInputTest, TooManyHeadersAreRefused) {
  // Few bytes, many headers: one name with thousands of NUL-separated values, and a count that
  // promises more pairs than the block holds.
  auto [many, seen] =
      Serve(SynStream(HeaderBlock({{"a", std::string(4000, '\0')}}, 1), Z_SYNC_FLUSH));
  EXPECT_EQ(many.code(), absl::StatusCode::kInvalidArgument) << many;
  EXPECT_THAT(many.message(), HasSubstr("too many headers"));
  auto [lying, none] = Serve(SynStream(HeaderBlock({{"a", "b"}}, 0xffffffffu), Z_SYNC_FLUSH));
  EXPECT_EQ(lying.code(), absl::StatusCode::kInvalidArgument) << lying;
}

}  // namespace
}  // namespace berth::cri::streaming
