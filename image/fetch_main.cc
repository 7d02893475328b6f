// berth-fetch: answers one request of berthd's (a manifest, a blob, a layer to unpack) with
// libcurl and libarchive, which berthd itself does not map. Protocol: image/fetch_helper.h.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <memory>
#include <string>

#include "base/process.h"
#include "image/fetch_helper.h"
#include "image/registry.h"
#include "image/unpack.h"
#include "nlohmann/json.hpp"

namespace {

constexpr size_t kMaxRequest = 1 << 20;

void WriteLine(const nlohmann::json& line) {
  // Registry error texts may hold anything: no invalid UTF-8 ends the answer.
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ::_exit(1);  // berthd has gone: nobody is left to answer
    done += static_cast<size_t>(n);
  }
}

}  // namespace

int main() {
  // Ends with the berthd thread that started it and waits for it (berthd killed included).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const char* parent = ::getenv(berth::image::kFetchParentEnv);
  if (parent == nullptr || std::atoi(parent) != ::getppid()) return 1;  // berthd is gone already
  // Below berthd's own threads: an unpack may use a whole CPU (berth::kHelperNice).
  errno = 0;
  const int current = ::getpriority(PRIO_PROCESS, 0);
  if (errno == 0) ::setpriority(PRIO_PROCESS, 0, std::min(19, current + berth::kHelperNice));
  ::signal(SIGPIPE, SIG_IGN);
  std::string text;
  char chunk[16 << 10];
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(chunk, static_cast<size_t>(n));
    if (text.size() > kMaxRequest) break;
  }
  const nlohmann::json request = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  std::unique_ptr<berth::image::CurlRegistryClient> client;
  berth::image::ServeFetchRequest(
      request.is_discarded() ? nlohmann::json::object() : request,
      [&](std::chrono::seconds stall_timeout) {
        client = std::make_unique<berth::image::CurlRegistryClient>(
            berth::image::CurlRegistryClient::Options{.stall_timeout = stall_timeout});
        return client.get();
      },
      [](const std::string& blob, const std::string& dest,
         const berth::image::UnpackLimits& limits) {
        return berth::image::UnpackLayer(blob, dest, limits);
      },
      WriteLine);
  return 0;
}
