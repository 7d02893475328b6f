#pragma once

// A socket pair for the network targets: the client end sends the fuzz input and shuts its
// writing side, and a thread reads (and drops) whatever the code under test answers until the
// server end is closed.

#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <thread>

#include "fuzz_check.h"

class FedSocket {
 public:
  FedSocket(const uint8_t* data, size_t size) {
    int pair[2];
    FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    server_ = pair[0];
    client_ = pair[1];
    // A unix socket buffers the 64 KiB the targets take at most, whatever the system's settings.
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::write(client_, data + done, size - done);
      FUZZ_CHECK(n > 0);
      done += static_cast<size_t>(n);
    }
    ::shutdown(client_, SHUT_WR);
    drain_ = std::thread([fd = client_] {
      char buf[4096];
      while (::read(fd, buf, sizeof buf) > 0) {
      }
    });
  }
  // The server end must be closed (by whoever took it) before this runs.
  ~FedSocket() {
    drain_.join();
    ::close(client_);
  }
  FedSocket(const FedSocket&) = delete;
  FedSocket& operator=(const FedSocket&) = delete;

  // The end the code under test reads; it takes it over.
  int server() const { return server_; }

 private:
  int server_ = -1;
  int client_ = -1;
  std::thread drain_;
};
