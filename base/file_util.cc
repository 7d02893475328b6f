#include "base/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/unique_fd.h"

namespace berth {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  std::string content;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) {
      return content;
    }
    content.append(buf, static_cast<size_t>(n));
  }
}

namespace {

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoToStatus(errno, absl::StrCat("write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fsync ", dir));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileAtomic(const std::string& path, absl::string_view content, mode_t mode,
                             Durability durability) {
  const bool synced = durability == Durability::kSynced;
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("create ", tmp));
  }
  absl::Status status = WriteAll(fd.get(), content, tmp);
  if (status.ok() && ::fchmod(fd.get(), mode) != 0) {
    status = ErrnoToStatus(errno, absl::StrCat("chmod ", tmp));
  }
  if (status.ok() && synced && ::fsync(fd.get()) != 0) {
    status = ErrnoToStatus(errno, absl::StrCat("fsync ", tmp));
  }
  fd.Reset();
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoToStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return synced ? FsyncDir(DirName(path)) : absl::OkStatus();
}

std::vector<std::string> RemoveInterruptedWrites(const std::string& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t at = name.rfind(".tmp.");
    pid_t pid = 0;
    if (at == std::string::npos || at == 0 ||
        !absl::SimpleAtoi(absl::string_view(name).substr(at + 5), &pid) || pid == ::getpid()) {
      continue;
    }
    if (::unlink(entry.path().c_str()) == 0) removed.push_back(entry.path().string());
  }
  return removed;
}

absl::Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) {
    return absl::InvalidArgumentError("mkdir: empty path");
  }
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      return absl::OkStatus();
    }
    return absl::AlreadyExistsError(absl::StrCat("mkdir ", path, ": exists and is not a directory"));
  }
  std::string parent = DirName(path);
  if (parent != path && parent != "." && parent != "/") {
    absl::Status status = MakeDirs(parent, mode);
    if (!status.ok()) {
      return status;
    }
  }
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, absl::StrCat("mkdir ", path));
  }
  return absl::OkStatus();
}

std::string DirName(absl::string_view path) {
  while (path.size() > 1 && path.back() == '/') {
    path.remove_suffix(1);
  }
  size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) {
    return ".";
  }
  if (slash == 0) {
    return "/";
  }
  return std::string(path.substr(0, slash));
}

absl::StatusOr<std::string> MakeTempDirIn(const std::string& parent, absl::string_view prefix) {
  if (absl::Status s = MakeDirs(parent, 0700); !s.ok()) return s;
  std::string path = absl::StrCat(parent, "/", prefix, "XXXXXX");
  if (::mkdtemp(path.data()) == nullptr) return ErrnoToStatus(errno, absl::StrCat("mkdtemp ", path));
  return path;
}

}  // namespace berth
