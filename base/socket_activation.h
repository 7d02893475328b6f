#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace berth {

// A socket the service manager opened for this process (systemd's socket activation,
// sd_listen_fds(3)): the descriptor, and its name from LISTEN_FDNAMES ("" if none was given).
struct InheritedSocket {
  UniqueFd fd;
  std::string name;
};

// Takes the sockets passed as descriptors 3.. with LISTEN_FDS, if LISTEN_PID names this process,
// and removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment, so that no child
// takes them for its own. The descriptors become close-on-exec. Call before any thread starts.
// Without LISTEN_FDS, or for another process's LISTEN_PID, returns nothing; a malformed
// LISTEN_FDS is InvalidArgument (systemd never sends one: whoever did wants to hear it).
absl::StatusOr<std::vector<InheritedSocket>> TakeInheritedSockets();

// The path of the listening unix stream socket `fd` is bound to. InvalidArgument, saying what it
// is instead, for any other descriptor (not a socket, not listening, not a unix stream socket,
// unnamed or abstract).
absl::StatusOr<std::string> ListeningUnixSocketPath(int fd);

}  // namespace berth
