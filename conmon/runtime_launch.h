#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "conmon/options.h"

namespace berth::conmon {

// The container's end of its stdio as conmon holds it: pipes, or one pty master for a tty.
struct Stdio {
  int in = -1;   // write end of the container's stdin (-1: none)
  int out = -1;  // read end of stdout (the pty master with a tty)
  int err = -1;  // read end of stderr (-1 with a tty)
};

// What the runtime child gets: its end of each pipe (or /dev/null).
struct WorkerFds {
  int in = -1, out = -1, err = -1;
};

// The runtime's command line for `create`, `run --detach` (--run) or `exec --detach`.
std::vector<std::string> RuntimeArgv(const Options& o, const std::string& console_socket);

// Makes the pipes. Returns errno on failure, 0 on success.
int MakePipes(bool with_stdin, Stdio* ours, WorkerFds* theirs);

// Forks and execs the runtime with the worker fds as its stdio. Returns the pid or -1 (errno set).
pid_t SpawnRuntime(const std::vector<std::string>& argv, const WorkerFds& fds);

// A listening unix socket the runtime connects to to hand over the pty master.
// Returns the listening fd, or -1 (errno set); *path is where it was bound.
int ListenConsoleSocket(std::string* path);

// Accepts the runtime's connection and receives the pty master (SCM_RIGHTS). -1 on failure.
int ReceiveConsole(int listen_fd);

// Reads a pid file ("1234", maybe with a newline). -1 when missing or bad.
pid_t ReadPidFile(const std::string& path);

// Writes a file atomically (tmp + rename). False on failure.
bool WriteFileAtomic(const std::string& path, const std::string& data);

}  // namespace berth::conmon
