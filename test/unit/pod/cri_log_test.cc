#include "pod/cri_log.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace berth::pod {
namespace {

class ReadCriLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-cri-log-test.XXXXXX";
    const int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    path_ = tmpl;
  }
  void TearDown() override { ::unlink(path_.c_str()); }
  void Write(const std::string& text) { std::ofstream(path_, std::ios::binary) << text; }
  std::string path_;
};

TEST_F(ReadCriLogTest, RecordsAcrossChunksAndBothStreams) {
  std::string log, out, err;
  for (int i = 0; i < 20000; ++i) {  // about 800 KiB: many read chunks, records cut between them
    const std::string line = absl::StrCat("line ", i);
    const bool to_err = i % 3 == 0;
    absl::StrAppend(&log, "2026-12-02T00:00:00.000000000Z ", to_err ? "stderr" : "stdout",
                    i % 7 == 0 ? " P " : " F ", line, "\n");
    absl::StrAppend(to_err ? &err : &out, line, i % 7 == 0 ? "" : "\n");
  }
  Write(log);
  absl::StatusOr<CriLogStreams> s = ReadCriLog(path_, 16 << 20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->stdout_data, out);
  EXPECT_EQ(s->stderr_data, err);
  EXPECT_FALSE(s->truncated);
  // The same as the in-memory parser.
  CriLogStreams m = ParseCriLog(log, 16 << 20);
  EXPECT_EQ(m.stdout_data, out);
  EXPECT_EQ(m.stderr_data, err);
}

TEST_F(ReadCriLogTest, StreamsAreCutAtTheBound) {
  Write("t stdout F abcdef\nt stderr F 12\nt stdout F ghi\n");
  absl::StatusOr<CriLogStreams> s = ReadCriLog(path_, 4);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->stdout_data, "abcd");
  EXPECT_EQ(s->stderr_data, "12\n");
  EXPECT_TRUE(s->truncated);
}

TEST_F(ReadCriLogTest, StreamsFilledExactlyAreTruncatedByARecordInALaterChunk) {
  // Seen writing test/fuzz/cri_log_fuzz's oracle (ParseCriLog of the whole text): reading stopped
  // after the 64 KiB chunk that filled both streams and missed that more followed.
  std::string log = "t stdout F ab\nt stderr F ab\n";
  log += std::string((64 << 10) - log.size() - 1, 'x') + "\n";
  log += "t stdout F more\n";
  Write(log);
  absl::StatusOr<CriLogStreams> s = ReadCriLog(path_, 3);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->stdout_data, "ab\n");
  EXPECT_EQ(s->stderr_data, "ab\n");
  EXPECT_TRUE(s->truncated);
  EXPECT_TRUE(ParseCriLog(log, 3).truncated);
}

TEST_F(ReadCriLogTest, AnEndlessRecordIsSkippedNotHeld) {
  Write(absl::StrCat("t stdout F before\n", "t stdout F ", std::string(3 << 20, 'x'),
                     "\nt stdout F after\n"));
  absl::StatusOr<CriLogStreams> s = ReadCriLog(path_, 16 << 20);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->stdout_data, "before\nafter\n");
}

TEST_F(ReadCriLogTest, AMissingFileHoldsNothing) {
  ::unlink(path_.c_str());
  absl::StatusOr<CriLogStreams> s = ReadCriLog(path_, 10);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->stdout_data.empty());
  EXPECT_TRUE(s->stderr_data.empty());
}

}  // namespace
}  // namespace berth::pod
