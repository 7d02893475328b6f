// The remote-command protocol over SPDY: the client opens "error", "stdin", "stdout", "stderr"
// and (with a tty) "resize" streams; we answer each and map them to channels.

#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "cri/streaming/server.h"
#include "cri/streaming/spdy.h"
#include "cri/streaming/transport.h"

namespace berth::cri::streaming {
namespace {

constexpr absl::Duration kStreamWait = absl::Seconds(30);

class SpdyTransport final : public Transport {
 public:
  SpdyTransport(int fd, std::chrono::milliseconds idle, bool structured_status, Inbound* in)
      : session_(fd), structured_status_(structured_status), in_(in) {
    session_.set_idle_timeout_ms(idle.count());
    spdy::Session::Handlers handlers;
    handlers.on_stream = [this](uint32_t id, const spdy::Headers& headers, bool) {
      (void)session_.Reply(id);
      absl::MutexLock lock(&mu_);
      streams_[spdy::HeaderValue(headers, "streamtype")] = id;
    };
    handlers.on_data = [this](uint32_t id, std::string_view data, bool fin) {
      const std::string type = TypeOf(id);
      if (type == "stdin") {
        in_->Stdin(data);
        if (fin) in_->StdinClosed();
      } else if (type == "resize") {
        in_->ResizeJson(data);
      }
    };
    reader_ = std::thread([this, handlers] {
      absl::Status s = session_.Run(handlers);
      if (!s.ok()) spdlog::debug("streaming session: {}", s.message());
      {
        absl::MutexLock lock(&mu_);
        gone_ = true;
      }
      in_->Gone();
    });
  }

  void set_no_resize() { resize_expected_ = false; }

  ~SpdyTransport() override {
    if (reader_.joinable()) {
      session_.Close();
      reader_.join();
    }
  }

  void AwaitReady(const Request& r) override {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto has = [&](const char* t) { return streams_.contains(t); };
      // v2 has no resize stream.
      return gone_ || (has("error") && (!r.stdin || has("stdin")) && (!r.stdout || has("stdout")) &&
                       (!r.stderr || r.tty || has("stderr")) &&
                       (!r.tty || !resize_expected_ || has("resize")));
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), kStreamWait)) {
      spdlog::warn("streaming: the client did not open its streams in time");
    }
  }

  bool Send(Channel channel, std::string_view data) override {
    const uint32_t id = IdOf(channel == Channel::kStderr ? "stderr" : "stdout");
    return id == 0 || session_.Data(id, data).ok();
  }

  void Finish(int exit_code, const std::string& error) override {
    // v4 and v5 carry a metav1.Status; v2 and v3 the failure's message, nothing on success.
    std::string report;
    if (structured_status_) {
      report = StatusJson(exit_code, error);
    } else if (!error.empty()) {
      report = error;
    } else if (exit_code != 0) {
      report = absl::StrCat("command terminated with non-zero exit code: exit status ", exit_code);
    }
    if (uint32_t e = IdOf("error")) (void)session_.Data(e, report, true);
    for (const char* t : {"stdout", "stderr"}) {
      if (uint32_t id = IdOf(t)) (void)session_.Data(id, "", true);
    }
    session_.Close();
    reader_.join();
  }

 private:
  uint32_t IdOf(const std::string& type) {
    absl::MutexLock lock(&mu_);
    auto it = streams_.find(type);
    return it == streams_.end() ? 0 : it->second;
  }
  std::string TypeOf(uint32_t id) {
    absl::MutexLock lock(&mu_);
    for (const auto& [type, sid] : streams_) {
      if (sid == id) return type;
    }
    return "";
  }

  spdy::Session session_;
  const bool structured_status_;
  bool resize_expected_ = true;
  Inbound* in_;
  absl::Mutex mu_;
  std::map<std::string, uint32_t> streams_ ABSL_GUARDED_BY(mu_);
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reader_;
};

}  // namespace

void Server::ServeRemoteCommand(int fd, const Request& request, const std::string& protocol) {
  Inbound in;
  const bool structured = protocol == "v4.channel.k8s.io" || protocol == "v5.channel.k8s.io";
  SpdyTransport t(fd, std::chrono::duration_cast<std::chrono::milliseconds>(config_.idle_timeout),
                  structured, &in);
  if (protocol == "v2.channel.k8s.io") t.set_no_resize();
  RunRemoteCommand(request, t, in);
}

}  // namespace berth::cri::streaming
