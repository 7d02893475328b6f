#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace berth::cri {

// Claims the CRI socket path for this daemon: an exclusive flock on "<path>.lock" (held for the
// daemon's life, holding its pid) so that a second berthd on the same path is refused, and removal of
// a stale socket left by a dead daemon. Owns the socket file: removes it on destruction. Move-only.
class ListenSocket {
 public:
  // FailedPrecondition ("... already serving ...") if another berthd holds the path, AlreadyExists if
  // another process answers on it, FailedPrecondition if the path is not a socket.
  static absl::StatusOr<ListenSocket> Claim(const std::string& path);

  ListenSocket(ListenSocket&&) = default;
  ListenSocket& operator=(ListenSocket&&) = default;
  ~ListenSocket();

  // Once the server listens: root-owned, mode 0660.
  absl::Status Secure() const;

  const std::string& path() const { return path_; }

 private:
  ListenSocket(std::string path, UniqueFd lock) : path_(std::move(path)), lock_(std::move(lock)) {}

  std::string path_;
  UniqueFd lock_;
};

}  // namespace berth::cri
