#include "conmon/sync_pipe.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace berth::conmon {

int SyncPipe::FdFromEnv(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return -1;
  char* end = nullptr;
  errno = 0;
  const long fd = std::strtol(text, &end, 10);
  if (errno != 0 || *end != '\0' || fd < 0 || fd > 65535) return -1;
  if (::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC) != 0) return -1;
  return static_cast<int>(fd);
}

std::string JsonEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out;
}

void SyncPipe::Send(std::string_view key, long long value, std::string_view message) {
  if (fd_ < 0) return;
  std::string line = "{\"" + std::string(key) + "\": " + std::to_string(value);
  if (!message.empty()) line += ", \"message\": \"" + JsonEscape(message) + "\"";
  line += "}\n";
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Close();
      return;
    }
    done += static_cast<size_t>(n);
  }
}

void SyncPipe::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace berth::conmon
