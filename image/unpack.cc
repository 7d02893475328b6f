#include "image/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <iterator>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "image/digest.h"

namespace berth::image {
namespace {

constexpr absl::string_view kWhiteoutPrefix = ".wh.";
constexpr absl::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr size_t kBufferSize = 1 << 20;

using ArchivePtr = std::unique_ptr<archive, decltype(&archive_read_free)>;

absl::Status EntryError(absl::string_view entry, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("layer entry \"", entry, "\": ", what));
}

// Splits an entry name into components, as tar does: leading "/" and "./" dropped, "." and empty
// components ignored. ".." is refused: no legitimate layer needs it, and it is how entries escape.
absl::StatusOr<std::vector<std::string>> Components(absl::string_view name) {
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return EntryError(name, "\"..\" would leave the layer");
    parts.emplace_back(part);
  }
  return parts;
}

// Opens a path beneath `root` the way the kernel would inside a chroot at root: symlinks (also
// absolute ones) and ".." never leave it.
absl::StatusOr<UniqueFd> OpenBeneath(int root, const std::string& path, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const long fd = ::syscall(SYS_openat2, root, path.empty() ? "." : path.c_str(), &how, sizeof how);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path.empty() ? "." : path));
  return UniqueFd(static_cast<int>(fd));
}

// `link` (a symlink's target) as components beneath root, seen from the directory `dir`: ".."
// stops at the root, as RESOLVE_IN_ROOT does.
std::vector<std::string> ResolveLink(std::vector<std::string> dir, absl::string_view link) {
  if (absl::StartsWith(link, "/")) dir.clear();
  for (absl::string_view part : absl::StrSplit(link, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!dir.empty()) dir.pop_back();
      continue;
    }
    dir.emplace_back(part);
  }
  return dir;
}

absl::Status TooDeep(absl::string_view entry, int64_t max_depth) {
  return absl::ResourceExhaustedError(absl::StrCat("layer entry \"", entry,
                                                   "\": deeper than images.max_path_depth (",
                                                   max_depth, " components)"));
}

// Opens (creating as needed, mode 0755) the directory `parts` beneath root. A dangling symlink on
// the way is followed inside the root and the directories it names are created there. Walks one
// component at a time without recursion: a hostile layer decides how deep the path is.
absl::StatusOr<UniqueFd> OpenDirs(int root, std::vector<std::string> parts, absl::string_view entry,
                                  int64_t max_depth) {
  // The common case: the directory is there (symlinks on the way resolved inside the root).
  absl::StatusOr<UniqueFd> dir =
      OpenBeneath(root, absl::StrJoin(parts, "/"), O_DIRECTORY | O_RDONLY);
  if (dir.ok()) return dir;
  if (!absl::IsNotFound(dir.status())) return EntryError(entry, dir.status().message());
  int links = 0;
  ASSIGN_OR_RETURN(UniqueFd current, OpenBeneath(root, "", O_DIRECTORY | O_RDONLY));
  for (size_t i = 0; i < parts.size();) {
    const char* name = parts[i].c_str();
    const int fd = ::openat(current.get(), name, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      current = UniqueFd(fd);
      ++i;
      continue;
    }
    if (errno == ENOENT) {
      if (::mkdirat(current.get(), name, 0755) != 0 && errno != EEXIST) {
        return EntryError(entry, ErrnoToStatus(errno, absl::StrCat("mkdir ", parts[i])).message());
      }
      const int made =
          ::openat(current.get(), name, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
      if (made < 0) {
        return EntryError(entry, ErrnoToStatus(errno, absl::StrCat("open ", parts[i])).message());
      }
      current = UniqueFd(made);
      ++i;
      continue;
    }
    if (errno != ELOOP && errno != ENOTDIR) {
      return EntryError(entry, ErrnoToStatus(errno, absl::StrCat("open ", parts[i])).message());
    }
    char target[PATH_MAX];
    const ssize_t n = ::readlinkat(current.get(), name, target, sizeof target - 1);
    if (n <= 0) return EntryError(entry, absl::StrCat(parts[i], " is not a directory"));
    if (++links > 40) return EntryError(entry, "too many levels of symbolic links");
    // Follow the link from the root: what it names, then the rest of the path.
    const auto at = parts.begin() + static_cast<ptrdiff_t>(i);
    std::vector<std::string> resolved =
        ResolveLink(std::vector<std::string>(parts.begin(), at),
                    absl::string_view(target, static_cast<size_t>(n)));
    resolved.insert(resolved.end(), std::make_move_iterator(at + 1),
                    std::make_move_iterator(parts.end()));
    if (static_cast<int64_t>(resolved.size()) > max_depth) return TooDeep(entry, max_depth);
    parts = std::move(resolved);
    ASSIGN_OR_RETURN(current, OpenBeneath(root, "", O_DIRECTORY | O_RDONLY));
    i = 0;
  }
  return current;
}

// Removes `name` in `dir` whatever it is; a directory with everything in it. Never follows
// symlinks.
absl::Status RemoveAt(int dir, const std::string& name) {
  if (::unlinkat(dir, name.c_str(), 0) == 0 || errno == ENOENT) return absl::OkStatus();
  if (errno != EISDIR) return ErrnoToStatus(errno, absl::StrCat("remove ", name));
  const int fd = ::openat(dir, name.c_str(), O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", name));
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return ErrnoToStatus(errno, absl::StrCat("opendir ", name));
  }
  absl::Status status;
  while (const dirent* e = ::readdir(d)) {
    const absl::string_view child = e->d_name;
    if (child == "." || child == "..") continue;
    status = RemoveAt(::dirfd(d), std::string(child));
    if (!status.ok()) break;
  }
  ::closedir(d);
  RETURN_IF_ERROR(status);
  if (::unlinkat(dir, name.c_str(), AT_REMOVEDIR) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("rmdir ", name));
  }
  return absl::OkStatus();
}

// Reads the decompressed stream of reader A for reader B, hashing every byte that passes.
struct Stream {
  archive* raw;
  const UnpackLimits& limits;
  Sha256 sha;
  std::vector<char> buffer = std::vector<char>(kBufferSize);
  bool eof = false;
  int64_t total = 0;
  std::string error;
  bool exhausted = false;  // `error` is a limit, not corruption
  absl::Status stopped;    // what limits.stop said, when it said stop
  int64_t next_stop_check = 0;
};

// How much of the stream passes between two looks at limits.stop.
constexpr int64_t kStopCheckBytes = 8 << 20;

la_ssize_t ReadRaw(archive*, void* data, const void** out) {
  auto* s = static_cast<Stream*>(data);
  if (s->eof) return 0;
  const la_ssize_t n = archive_read_data(s->raw, s->buffer.data(), s->buffer.size());
  if (n < 0) {
    s->error = archive_error_string(s->raw) ? archive_error_string(s->raw) : "read error";
    return -1;
  }
  if (n == 0) s->eof = true;
  s->total += n;
  if (s->limits.stop && s->total >= s->next_stop_check) {
    s->next_stop_check = s->total + kStopCheckBytes;
    if (absl::Status stop = s->limits.stop(); !stop.ok()) {
      s->error = std::string(stop.message());
      s->stopped = std::move(stop);
      return -1;
    }
  }
  if (s->total > s->limits.max_bytes) {
    s->error = absl::StrCat("larger than images.max_layer_size (", s->limits.max_bytes,
                            " bytes uncompressed)");
    s->exhausted = true;
    return -1;
  }
  if (s->limits.image_bytes != nullptr &&
      s->limits.image_bytes->fetch_add(n) + n > s->limits.max_image_bytes) {
    s->error = absl::StrCat("the image is larger than images.max_image_size (",
                            s->limits.max_image_bytes, " bytes uncompressed)");
    s->exhausted = true;
    return -1;
  }
  s->sha.Update(s->buffer.data(), static_cast<size_t>(n));
  *out = s->buffer.data();
  return n;
}

class Unpacker {
 public:
  Unpacker(int root, archive* tar, const UnpackLimits& limits)
      : root_(root), tar_(tar), limits_(limits) {}

  absl::Status Entry(archive_entry* e);
  absl::Status Finish();
  UnpackResult& result() { return result_; }

 private:
  absl::Status Whiteout(const std::string& name, int parent, const std::string& base);
  absl::Status Create(archive_entry* e, const std::string& name, int parent,
                      const std::string& base);
  absl::Status WriteFile(archive_entry* e, const std::string& name, int parent,
                         const std::string& base);
  absl::Status Attributes(archive_entry* e, const std::string& name, int fd);

  const int root_;
  archive* const tar_;
  const UnpackLimits& limits_;
  int64_t entries_ = 0;
  UnpackResult result_;
  std::vector<std::pair<std::string, timespec>> dir_times_;  // applied last: children touch them
};

absl::Status Unpacker::Entry(archive_entry* e) {
  const char* raw_name = archive_entry_pathname(e);
  const std::string name = raw_name != nullptr ? raw_name : "";
  if (++entries_ > limits_.max_entries) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "more entries than images.max_layer_entries (", limits_.max_entries, ")"));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> parts, Components(name));
  if (static_cast<int64_t>(parts.size()) > limits_.max_depth) {
    return TooDeep(name, limits_.max_depth);
  }
  if (parts.empty()) {  // "./": the layer root itself
    if (archive_entry_filetype(e) != AE_IFDIR) return EntryError(name, "the root must be a directory");
    return Attributes(e, name, root_);
  }
  const std::string base = parts.back();
  parts.pop_back();
  ASSIGN_OR_RETURN(UniqueFd parent, OpenDirs(root_, std::move(parts), name, limits_.max_depth));
  if (absl::StartsWith(base, kWhiteoutPrefix)) return Whiteout(name, parent.get(), base);
  return Create(e, name, parent.get(), base);
}

absl::Status Unpacker::Whiteout(const std::string& name, int parent, const std::string& base) {
  ++result_.inodes;
  if (base == kOpaqueMarker) {
    if (::fsetxattr(parent, "trusted.overlay.opaque", "y", 1, 0) != 0) {
      return EntryError(name, ErrnoToStatus(errno, "set trusted.overlay.opaque").message());
    }
    return absl::OkStatus();
  }
  const std::string hidden = base.substr(kWhiteoutPrefix.size());
  if (hidden.empty() || hidden == "." || hidden == "..") return EntryError(name, "bad whiteout");
  RETURN_IF_ERROR(RemoveAt(parent, hidden));
  if (::mknodat(parent, hidden.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
    return EntryError(name, ErrnoToStatus(errno, "create whiteout").message());
  }
  return absl::OkStatus();
}

absl::Status Unpacker::Create(archive_entry* e, const std::string& name, int parent,
                              const std::string& base) {
  const mode_t type = archive_entry_filetype(e);
  struct stat st;
  bool exists = ::fstatat(parent, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (exists && !(type == AE_IFDIR && S_ISDIR(st.st_mode))) {
    // Later entries replace earlier ones (tar order), a directory with all it holds.
    RETURN_IF_ERROR(Annotate(RemoveAt(parent, base), absl::StrCat("layer entry \"", name, "\"")));
    exists = false;
  }
  ++result_.inodes;
  if (const char* link = archive_entry_hardlink(e); link != nullptr) {
    absl::StatusOr<std::vector<std::string>> components = Components(link);
    if (!components.ok()) {
      return EntryError(name, absl::StrCat("hard link to \"", link, "\" would leave the layer"));
    }
    std::vector<std::string> target = *std::move(components);
    if (target.empty()) return EntryError(name, "hard link to the layer root");
    const std::string target_base = target.back();
    target.pop_back();
    absl::StatusOr<UniqueFd> target_dir =
        OpenBeneath(root_, absl::StrJoin(target, "/"), O_DIRECTORY | O_RDONLY);
    if (!target_dir.ok() ||
        ::linkat(target_dir->get(), target_base.c_str(), parent, base.c_str(), 0) != 0) {
      return EntryError(name, absl::StrCat("hard link to \"", link, "\": ",
                                           target_dir.ok() ? strerror(errno) : "no such target"));
    }
    return absl::OkStatus();
  }
  switch (type) {
    case AE_IFREG:
      return WriteFile(e, name, parent, base);
    case AE_IFDIR: {
      if (!exists && ::mkdirat(parent, base.c_str(), 0700) != 0) {
        return EntryError(name, ErrnoToStatus(errno, "mkdir").message());
      }
      const int fd = ::openat(parent, base.c_str(), O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
      if (fd < 0) return EntryError(name, ErrnoToStatus(errno, "open").message());
      UniqueFd dir(fd);
      return Attributes(e, name, dir.get());
    }
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      // The target is only text: every later path is resolved beneath the root, so an absolute or
      // "../" target cannot lead out.
      if (target == nullptr || ::symlinkat(target, parent, base.c_str()) != 0) {
        return EntryError(name, ErrnoToStatus(errno, "symlink").message());
      }
      ::fchownat(parent, base.c_str(), archive_entry_uid(e), archive_entry_gid(e),
                 AT_SYMLINK_NOFOLLOW);
      const timespec times[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                                 {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
      ::utimensat(parent, base.c_str(), times, AT_SYMLINK_NOFOLLOW);
      return absl::OkStatus();
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
      const mode_t kind = type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO;
      if (::mknodat(parent, base.c_str(), kind | 0600, archive_entry_rdev(e)) != 0) {
        return EntryError(name, ErrnoToStatus(errno, "mknod").message());
      }
      ::fchownat(parent, base.c_str(), archive_entry_uid(e), archive_entry_gid(e),
                 AT_SYMLINK_NOFOLLOW);
      ::fchmodat(parent, base.c_str(), archive_entry_perm(e), 0);
      const timespec times[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                                 {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
      ::utimensat(parent, base.c_str(), times, AT_SYMLINK_NOFOLLOW);
      return absl::OkStatus();
    }
    default:
      return EntryError(name, absl::StrCat("unsupported entry type ", type));
  }
}

absl::Status Unpacker::WriteFile(archive_entry* e, const std::string& name, int parent,
                                 const std::string& base) {
  const int raw_fd = ::openat(parent, base.c_str(),
                              O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (raw_fd < 0) return EntryError(name, ErrnoToStatus(errno, "create").message());
  UniqueFd fd(raw_fd);
  // Block by block at their offsets: the holes of a sparse file stay holes.
  for (;;) {
    const void* data = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    const int r = archive_read_data_block(tar_, &data, &size, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return EntryError(name, archive_error_string(tar_));
    const char* bytes = static_cast<const char*>(data);
    for (size_t done = 0; done < size;) {
      const ssize_t w = ::pwrite(fd.get(), bytes + done, size - done, offset + static_cast<off_t>(done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return EntryError(name, ErrnoToStatus(errno, "write").message());
      done += static_cast<size_t>(w);
    }
    result_.size_bytes += static_cast<int64_t>(size);
  }
  // A hole at the end has no block.
  if (archive_entry_size_is_set(e) && ::ftruncate(fd.get(), archive_entry_size(e)) != 0) {
    return EntryError(name, ErrnoToStatus(errno, "truncate").message());
  }
  return Attributes(e, name, fd.get());
}

// Owner, then mode (chown clears set-id bits), xattrs and times, on an open file or directory.
absl::Status Unpacker::Attributes(archive_entry* e, const std::string& name, int fd) {
  if (::fchown(fd, archive_entry_uid(e), archive_entry_gid(e)) != 0) {
    return EntryError(name, ErrnoToStatus(errno, "chown").message());
  }
  if (::fchmod(fd, archive_entry_perm(e)) != 0) {
    return EntryError(name, ErrnoToStatus(errno, "chmod").message());
  }
  archive_entry_xattr_reset(e);
  const char* key = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
    if (::fsetxattr(fd, key, value, size, 0) != 0 && errno != EOPNOTSUPP) {
      return EntryError(name, ErrnoToStatus(errno, absl::StrCat("set xattr ", key)).message());
    }
  }
  const timespec mtime = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  if (archive_entry_filetype(e) == AE_IFDIR) {
    dir_times_.emplace_back(name, mtime);
    return absl::OkStatus();
  }
  const timespec times[2] = {mtime, mtime};
  ::futimens(fd, times);
  return absl::OkStatus();
}

absl::Status Unpacker::Finish() {
  for (auto it = dir_times_.rbegin(); it != dir_times_.rend(); ++it) {
    absl::StatusOr<std::vector<std::string>> parts = Components(it->first);
    if (!parts.ok()) continue;
    absl::StatusOr<UniqueFd> dir =
        OpenBeneath(root_, absl::StrJoin(*parts, "/"), O_DIRECTORY | O_RDONLY);
    if (!dir.ok()) continue;  // replaced by a later entry
    const timespec times[2] = {it->second, it->second};
    ::futimens(dir->get(), times);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UnpackResult> UnpackLayer(const std::string& blob_path, const std::string& dest_dir,
                                         const UnpackLimits& limits) {
  const int root = ::open(dest_dir.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (root < 0) return ErrnoToStatus(errno, absl::StrCat("open ", dest_dir));
  UniqueFd root_fd(root);
  auto bad = [&](archive* a, absl::string_view what) {
    const char* error = archive_error_string(a);
    return absl::InvalidArgumentError(absl::StrCat("layer ", blob_path, ": ", what, ": ",
                                                   error != nullptr ? error : "unknown error"));
  };

  // Reader A undoes the compression (gzip, zstd or none); reader B parses the tar it yields.
  ArchivePtr raw(archive_read_new(), archive_read_free);
  archive_read_support_filter_gzip(raw.get());
  archive_read_support_filter_zstd(raw.get());
  archive_read_support_format_raw(raw.get());
  archive_read_support_format_empty(raw.get());
  if (archive_read_open_filename(raw.get(), blob_path.c_str(), kBufferSize) != ARCHIVE_OK) {
    return bad(raw.get(), "open");
  }
  archive_entry* raw_entry = nullptr;
  const int header = archive_read_next_header(raw.get(), &raw_entry);
  if (header == ARCHIVE_EOF) return absl::InvalidArgumentError(absl::StrCat("layer ", blob_path, ": empty"));
  if (header != ARCHIVE_OK) return bad(raw.get(), "read");
  Stream stream{raw.get(), limits};
  auto stream_failed = [&] {
    if (!stream.stopped.ok()) return Annotate(stream.stopped, absl::StrCat("layer ", blob_path));
    const std::string message = absl::StrCat("layer ", blob_path, ": ",
                                             stream.exhausted ? "" : "corrupt data: ", stream.error);
    return stream.exhausted ? absl::ResourceExhaustedError(message)
                            : absl::InvalidArgumentError(message);
  };
  ArchivePtr tar(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(tar.get());
  archive_read_support_format_gnutar(tar.get());
  if (archive_read_open(tar.get(), &stream, nullptr, ReadRaw, nullptr) != ARCHIVE_OK) {
    // The first read may already be past a limit (the image's budget, spent by the layers
    // unpacked beside this one) or stopped: that, not the format, is the reason.
    if (!stream.error.empty() || !stream.stopped.ok()) return stream_failed();
    return bad(tar.get(), "not a tar archive");
  }
  Unpacker unpacker(root_fd.get(), tar.get(), limits);
  for (;;) {
    archive_entry* entry = nullptr;
    const int r = archive_read_next_header(tar.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return stream.error.empty() ? bad(tar.get(), "corrupt tar") : stream_failed();
    }
    absl::Status added = unpacker.Entry(entry);
    if (!added.ok() && !stream.error.empty()) return stream_failed();  // while reading its data
    RETURN_IF_ERROR(Annotate(added, absl::StrCat("layer ", blob_path)));
  }
  // The digest covers the whole uncompressed stream, padding after the tar's end included.
  const void* out = nullptr;
  while (!stream.eof) {
    if (ReadRaw(nullptr, &stream, &out) < 0) return stream_failed();
  }
  RETURN_IF_ERROR(unpacker.Finish());
  UnpackResult result = unpacker.result();
  result.diff_id = stream.sha.Finish();
  result.stream_bytes = stream.total;
  return result;
}

}  // namespace berth::image
