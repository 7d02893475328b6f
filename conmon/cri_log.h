#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace berth::conmon {

enum class Stream { kStdout, kStderr };

// Writes a container's output in the CRI log format kubelet reads:
//   <RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>\n
// F ends a line; P is a piece of a longer line (the rest follows in later records). Partial lines
// are held per stream up to a buffer's worth, so ordinary lines are not split by read boundaries.
// When the file would grow beyond `size_max` (> 0) it is truncated and starts again, as conmon does.
// Once the records written in all would pass `global_size_max` (> 0), nothing more is written
// (ExecSync's bound: the output is read back whole-record, never beyond it).
// Not thread-safe.
class CriLog {
 public:
  static constexpr size_t kPartialMax = 8192;

  CriLog(std::string path, int64_t size_max, int64_t global_size_max = -1)
      : path_(std::move(path)), size_max_(size_max), global_size_max_(global_size_max) {}
  ~CriLog();
  CriLog(const CriLog&) = delete;
  CriLog& operator=(const CriLog&) = delete;

  // Opens (creates) the file for appending. Returns errno on failure, 0 on success.
  int Open();
  // The file was rotated away (kubelet renamed it): start a new one at the path.
  int Reopen();
  void Write(Stream stream, std::string_view data);
  // Writes out what is held back for a stream (at exit).
  void Flush();
  void Sync();

  // The timestamp of a record: local time with its offset, nanoseconds, like conmon.
  static std::string Timestamp(const timespec& ts);

 private:
  void Emit(Stream stream, std::string_view line, bool partial);
  std::string path_;
  int64_t size_max_;
  int64_t global_size_max_;
  int fd_ = -1;
  int64_t written_ = 0;
  int64_t written_in_all_ = 0;
  std::string held_[2];
};

}  // namespace berth::conmon
