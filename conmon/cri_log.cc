#include "conmon/cri_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace berth::conmon {
namespace {

const char* Name(Stream s) { return s == Stream::kStdout ? "stdout" : "stderr"; }

void WriteAll(int fd, const iovec* iov, int count) {
  iovec local[4];
  for (int i = 0; i < count; ++i) local[i] = iov[i];
  iovec* cur = local;
  while (count > 0) {
    const ssize_t n = ::writev(fd, cur, count);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk loses log lines, never the container
    size_t left = static_cast<size_t>(n);
    while (count > 0 && left >= cur->iov_len) {
      left -= cur->iov_len;
      ++cur;
      --count;
    }
    if (count > 0) {
      cur->iov_base = static_cast<char*>(cur->iov_base) + left;
      cur->iov_len -= left;
    }
  }
}

}  // namespace

CriLog::~CriLog() {
  if (fd_ >= 0) ::close(fd_);
}

int CriLog::Open() {
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return errno;
  struct stat st;
  written_ = ::fstat(fd, &st) == 0 ? st.st_size : 0;
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  return 0;
}

int CriLog::Reopen() {
  if (fd_ >= 0) ::fsync(fd_);
  return Open();
}

std::string CriLog::Timestamp(const timespec& ts) {
  tm local;
  localtime_r(&ts.tv_sec, &local);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &local);
  char zone[8];
  strftime(zone, sizeof zone, "%z", &local);  // +hhmm -> +hh:mm below
  char out[64];
  if (zone[0] == '+' && zone[1] == '0' && zone[2] == '0' && zone[3] == '0' && zone[4] == '0') {
    std::snprintf(out, sizeof out, "%s.%09ldZ", date, static_cast<long>(ts.tv_nsec));
  } else {
    std::snprintf(out, sizeof out, "%s.%09ld%c%c%c:%c%c", date, static_cast<long>(ts.tv_nsec),
                  zone[0], zone[1], zone[2], zone[3], zone[4]);
  }
  return out;
}

void CriLog::Emit(Stream stream, std::string_view line, bool partial) {
  if (fd_ < 0) return;
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  std::string head = Timestamp(now);
  head += ' ';
  head += Name(stream);
  head += partial ? " P " : " F ";
  const int64_t size = static_cast<int64_t>(head.size() + line.size() + 1);
  if (global_size_max_ > 0 && written_in_all_ + size > global_size_max_) {
    written_in_all_ = global_size_max_;  // full: no smaller record slips in later either
    return;
  }
  if (size_max_ > 0 && written_ > 0 && written_ + size > size_max_) {
    // conmon's rule: the file starts over, so kubelet never reads a record cut in half.
    if (::ftruncate(fd_, 0) == 0) written_ = 0;
  }
  iovec iov[3] = {{head.data(), head.size()},
                  {const_cast<char*>(line.data()), line.size()},
                  {const_cast<char*>("\n"), 1}};
  WriteAll(fd_, iov, 3);
  written_ += size;
  written_in_all_ += size;
}

void CriLog::Write(Stream stream, std::string_view data) {
  std::string& held = held_[stream == Stream::kStdout ? 0 : 1];
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    if (nl == std::string_view::npos) {
      if (held.size() + data.size() < kPartialMax) {
        held.append(data);
        return;
      }
      // Too long to hold: a partial record now, the rest in later ones.
      held.append(data);
      Emit(stream, held, /*partial=*/true);
      held.clear();
      return;
    }
    std::string_view line = data.substr(0, nl);
    if (!held.empty()) {
      held.append(line);
      Emit(stream, held, false);
      held.clear();
    } else {
      Emit(stream, line, false);
    }
    data.remove_prefix(nl + 1);
  }
}

void CriLog::Flush() {
  for (int i = 0; i < 2; ++i) {
    if (!held_[i].empty()) {
      Emit(i == 0 ? Stream::kStdout : Stream::kStderr, held_[i], /*partial=*/true);
      held_[i].clear();
    }
  }
}

void CriLog::Sync() {
  if (fd_ >= 0) ::fsync(fd_);
}

}  // namespace berth::conmon
