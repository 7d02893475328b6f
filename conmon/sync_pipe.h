#pragma once

#include <string>
#include <string_view>

namespace berth::conmon {

// The pipe conmon's caller reads: one JSON object per line, {"<key>": N} or with "message".
// The key is "pid" for create, "exit_code" for exec (api version 0) and "data" for api version 1.
class SyncPipe {
 public:
  SyncPipe() = default;
  // Takes the fd named by the environment variable, e.g. _OCI_SYNCPIPE; -1 when unset or bad.
  static int FdFromEnv(const char* name);
  void Reset(int fd) { fd_ = fd; }
  bool valid() const { return fd_ >= 0; }
  // Writes one line; a reader that went away closes the pipe rather than killing us.
  void Send(std::string_view key, long long value, std::string_view message = {});
  void Close();

 private:
  int fd_ = -1;
};

// A JSON string literal's contents for `text`.
std::string JsonEscape(std::string_view text);

}  // namespace berth::conmon
