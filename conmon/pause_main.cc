// berth-pause: the infra process of a pod. It holds the pod's namespaces by being alive in them,
// reaps the zombies a shared PID namespace hands to it as PID 1, and exits 0 on SIGTERM or SIGINT.
// Static and tiny: berthd builds the pause container's root filesystem from this one file.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "base/version.h"

namespace {

void Say(int fd, const char* text) { (void)!write(fd, text, std::strlen(text)); }

void Exit(int) { _exit(0); }

void Reap(int) {
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

// PID 1 of a namespace drops every signal it has no handler for: handlers, not sigwait.
void Handle(int sig, void (*handler)(int), int flags) {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = handler;
  action.sa_flags = flags;
  sigemptyset(&action.sa_mask);
  sigaction(sig, &action, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  // write(2), not stdio: stdio would triple the size of the static binary.
  if (argc > 1 && (std::strcmp(argv[1], "-v") == 0 || std::strcmp(argv[1], "--version") == 0)) {
    Say(STDOUT_FILENO, "berth-pause ");
    Say(STDOUT_FILENO, berth::kVersion);
    Say(STDOUT_FILENO, "\n");
    return 0;
  }
  if (argc > 1) {
    Say(STDERR_FILENO, "berth-pause: takes no arguments (but -v)\n");
    return 2;
  }
  Handle(SIGTERM, Exit, 0);
  Handle(SIGINT, Exit, 0);
  Handle(SIGCHLD, Reap, SA_NOCLDSTOP | SA_RESTART);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);  // whatever the parent blocked
  for (;;) pause();
}
