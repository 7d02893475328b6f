#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace berth::cni {

// A network namespace pinned by a bind mount at a path (under run_root), so that it outlives the
// processes in it and CNI plugins can enter it by path. Owns the pin: the destructor removes it
// unless Release()d (persisted state then owns it). Move-only.
class NetNs {
 public:
  // Creates a new, empty network namespace pinned at `path` (its directory is created). Nothing is
  // left behind on failure. Thread-safe: the namespace is made in a short-lived thread, so the
  // caller's own namespace never changes.
  static absl::StatusOr<NetNs> Create(const std::string& path);

  NetNs(NetNs&& other) noexcept : path_(std::exchange(other.path_, "")) {}
  NetNs& operator=(NetNs&&) = delete;
  NetNs(const NetNs&) = delete;
  ~NetNs();

  const std::string& path() const { return path_; }
  // Gives up ownership: the pin stays.
  std::string Release() { return std::exchange(path_, ""); }

 private:
  explicit NetNs(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Unpins a namespace (lazy unmount, then unlink). OK if it is not there.
absl::Status RemoveNetNs(const std::string& path);

// Sets the loopback interface of the namespace pinned at `path` up (the kernel then gives it
// 127.0.0.1/8 and ::1), what the CNI loopback plugin does, without starting one. From a
// short-lived thread: the caller's own namespace never changes.
absl::Status BringUpLoopback(const std::string& path);

// Whether `path` is a pinned network namespace.
bool IsNetNs(const std::string& path);

}  // namespace berth::cni
