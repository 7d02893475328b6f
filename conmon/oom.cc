#include "conmon/oom.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

namespace berth::conmon {
namespace {

bool IsCgroup2(const char* path) {
  struct statfs fs;
  return ::statfs(path, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

// The line of /proc/<pid>/cgroup for the v1 memory controller, or the v2 unified one.
std::string CgroupOf(pid_t pid, bool v2) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    if (v2 ? controllers.empty() && line.compare(0, a, "0") == 0
           : ("," + controllers + ",").find(",memory,") != std::string::npos) {
      return line.substr(b + 1);
    }
  }
  return "";
}

}  // namespace

OomWatcher::~OomWatcher() {
  if (event_fd_ >= 0) ::close(event_fd_);
  if (control_fd_ >= 0) ::close(control_fd_);
}

long long OomWatcher::ReadKills() const {
  std::ifstream in(dir_ + (v2_ ? "/memory.events" : "/memory.oom_control"));
  std::string key;
  long long value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return 0;
}

bool OomWatcher::Watch(pid_t pid) {
  v2_ = IsCgroup2("/sys/fs/cgroup");
  const std::string cgroup = CgroupOf(pid, v2_);
  if (cgroup.empty()) return false;
  dir_ = (v2_ ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory") + cgroup;
  last_kills_ = ReadKills();
  if (v2_) {
    event_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (event_fd_ < 0) return false;
    if (::inotify_add_watch(event_fd_, (dir_ + "/memory.events").c_str(), IN_MODIFY) < 0) {
      ::close(event_fd_);
      event_fd_ = -1;
      return false;
    }
    return true;
  }
  control_fd_ = ::open((dir_ + "/memory.oom_control").c_str(), O_RDONLY | O_CLOEXEC);
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  const int ctl = ::open((dir_ + "/cgroup.event_control").c_str(), O_WRONLY | O_CLOEXEC);
  bool ok = control_fd_ >= 0 && event_fd_ >= 0 && ctl >= 0;
  if (ok) {
    char line[64];
    const int n = std::snprintf(line, sizeof line, "%d %d", event_fd_, control_fd_);
    ok = ::write(ctl, line, static_cast<size_t>(n)) == n;
  }
  if (ctl >= 0) ::close(ctl);
  if (!ok) {
    if (event_fd_ >= 0) ::close(event_fd_);
    event_fd_ = -1;
  }
  return ok;
}

bool OomWatcher::Check() {
  if (event_fd_ >= 0) {
    char drain[4096];
    while (::read(event_fd_, drain, sizeof drain) > 0) {
    }
  }
  if (dir_.empty()) return false;
  const long long kills = ReadKills();
  if (kills > last_kills_) {
    last_kills_ = kills;
    return true;
  }
  return false;
}

}  // namespace berth::conmon
