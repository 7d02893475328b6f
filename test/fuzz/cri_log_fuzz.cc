// A container's CRI log as ExecSync reads it back. ReadCriLog (a chunk at a time from the file)
// must give what ParseCriLog gives for the whole text. The first byte is the bound per stream.

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "pod/cri_log.h"

using berth::pod::CriLogStreams;
using berth::pod::ParseCriLog;
using berth::pod::ReadCriLog;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t max_per_stream = data[0];
  const absl::string_view log(reinterpret_cast<const char*>(data + 1), size - 1);
  const CriLogStreams whole = ParseCriLog(log, max_per_stream);
  FUZZ_CHECK(whole.stdout_data.size() <= max_per_stream);
  FUZZ_CHECK(whole.stderr_data.size() <= max_per_stream);

  const int fd = ::memfd_create("cri-log", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(::write(fd, log.data(), log.size()) == static_cast<ssize_t>(log.size()));
  absl::StatusOr<CriLogStreams> read =
      ReadCriLog("/proc/self/fd/" + std::to_string(fd), max_per_stream);
  ::close(fd);
  FUZZ_CHECK(read.ok());
  FUZZ_CHECK(read->stdout_data == whole.stdout_data);
  FUZZ_CHECK(read->stderr_data == whole.stderr_data);
  FUZZ_CHECK(read->truncated == whole.truncated);
  return 0;
}
