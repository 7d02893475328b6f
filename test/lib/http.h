#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace berth::testing {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// A plain HTTP/1.0 GET over TCP ("127.0.0.1:9537", "/metrics"), read to EOF. For tests only.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host_port, const std::string& path);

}  // namespace berth::testing
