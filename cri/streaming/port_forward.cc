// Port-forward over SPDY (portforward.k8s.io): for each connection the client opens an "error"
// and a "data" stream carrying the same "requestid" and the "port"; we connect to localhost:port
// inside the pod's network namespace and copy bytes both ways, reporting failures on the error
// stream.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/errno_status.h"
#include "base/logging.h"
#include "base/unique_fd.h"
#include "cri/streaming/server.h"
#include "cri/streaming/spdy.h"

namespace berth::cri::streaming {
namespace {

}  // namespace

// setns() changes only the calling thread, so a short-lived thread does it; the socket keeps
// the namespace it was created in.
absl::StatusOr<int> ConnectInNetns(const std::string& netns, int port) {
  absl::StatusOr<int> result = absl::InternalError("not run");
  std::thread([&] {
    if (!netns.empty()) {
      UniqueFd ns(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
      if (!ns.valid() || ::setns(ns.get(), CLONE_NEWNET) != 0) {
        result = ErrnoToStatus(errno, absl::StrCat("enter network namespace ", netns));
        return;
      }
    }
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!s.valid() || ::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      result = ErrnoToStatus(errno, absl::StrCat("connect to localhost:", port, " in the pod"));
      return;
    }
    result = s.Release();
  }).join();
  return result;
}

namespace {

struct Forward {
  uint32_t error_stream = 0;
  uint32_t data_stream = 0;
  int port = 0;
  int fd = -1;
  bool started = false;
};

}  // namespace

void Server::ServePortForward(int fd, const Request& request) {
  spdy::Session session(fd);
  session.set_idle_timeout_ms(static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.idle_timeout).count()));
  absl::StatusOr<pod::SandboxPtr> sandbox = sandboxes_->Get(request.id);
  const std::string netns = sandbox.ok() ? (*sandbox)->netns_path : "";
  absl::Mutex mu;
  std::map<std::string, Forward> forwards;  // by request id
  std::vector<std::thread> pumps;
  auto fail = [&](const Forward& f, const std::string& message) {
    if (f.error_stream != 0) (void)session.Data(f.error_stream, message, true);
    if (f.data_stream != 0) (void)session.Data(f.data_stream, "", true);
  };
  spdy::Session::Handlers handlers;
  handlers.on_stream = [&](uint32_t id, const spdy::Headers& headers, bool) {
    (void)session.Reply(id);
    const std::string type = spdy::HeaderValue(headers, "streamtype");
    const std::string request_id = spdy::HeaderValue(headers, "requestid");
    int port = 0;
    if (!absl::SimpleAtoi(spdy::HeaderValue(headers, "port"), &port) || port <= 0 || port > 65535) {
      (void)session.Reset(id, spdy::kProtocolError);
      return;
    }
    absl::MutexLock lock(&mu);
    Forward& f = forwards[request_id];
    f.port = port;
    (type == "error" ? f.error_stream : f.data_stream) = id;
    if (f.error_stream == 0 || f.data_stream == 0 || f.started) return;
    f.started = true;
    if (!sandbox.ok()) {
      fail(f, std::string(sandbox.status().message()));
      return;
    }
    absl::StatusOr<int> conn = ConnectInNetns(netns, port);
    if (!conn.ok()) {
      fail(f, absl::StrCat("error forwarding port ", port, " to pod ", request.id, ": ",
                           conn.status().message()));
      return;
    }
    f.fd = *conn;
    const uint32_t data_stream = f.data_stream;
    const int sock = f.fd;
    pumps.emplace_back([&session, sock, data_stream] {
      char buf[32 << 10];
      for (;;) {
        const ssize_t n = ::read(sock, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (!session.Data(data_stream, std::string_view(buf, static_cast<size_t>(n))).ok()) break;
      }
      (void)session.Data(data_stream, "", true);
    });
  };
  handlers.on_data = [&](uint32_t id, std::string_view data, bool fin) {
    absl::MutexLock lock(&mu);
    for (auto& [rid, f] : forwards) {
      if (f.data_stream != id || f.fd < 0) continue;
      while (!data.empty()) {
        const ssize_t n = ::send(f.fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) break;
        data.remove_prefix(static_cast<size_t>(n));
      }
      if (fin) ::shutdown(f.fd, SHUT_WR);
    }
  };
  handlers.on_reset = [&](uint32_t id) {
    absl::MutexLock lock(&mu);
    for (auto& [rid, f] : forwards) {
      if ((f.data_stream == id || f.error_stream == id) && f.fd >= 0) ::shutdown(f.fd, SHUT_RDWR);
    }
  };
  absl::Status s = session.Run(handlers);
  if (!s.ok()) spdlog::debug("port-forward session: {}", s.message());
  {
    absl::MutexLock lock(&mu);
    for (auto& [rid, f] : forwards) {
      if (f.fd >= 0) ::shutdown(f.fd, SHUT_RDWR);
    }
  }
  session.Close();
  for (std::thread& t : pumps) t.join();
  for (auto& [rid, f] : forwards) {
    if (f.fd >= 0) ::close(f.fd);
  }
}

}  // namespace berth::cri::streaming
