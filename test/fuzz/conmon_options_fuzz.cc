// berth-conmon's command line: the input is its arguments, separated by NUL bytes. The same
// input is also read as a pod monitor's request (a count and NUL-ended arguments).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "conmon/options.h"
#include "conmon/pod_request.h"
#include "fuzz_check.h"

using berth::conmon::Options;
using berth::conmon::ParseOptions;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args = {"berth-conmon"};
  std::string current;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\0') {
      args.push_back(current);
      current.clear();
    } else {
      current.push_back(static_cast<char>(data[i]));
    }
  }
  if (size > 0) args.push_back(current);
  if (args.size() > 256) return 0;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Options options;
  const std::string error = ParseOptions(static_cast<int>(args.size()), argv.data(), &options);
  if (error.empty() && !options.version && !options.pod_socket.empty()) {
    FUZZ_CHECK(options.pod_socket[0] == '/' && !options.pod_id.empty());
    FUZZ_CHECK(options.cid.empty() && !options.exec);
  } else if (error.empty() && !options.version) {
    FUZZ_CHECK(!options.cid.empty() && !options.runtime.empty() && !options.cuuid.empty());
    FUZZ_CHECK(!options.bundle.empty() && !options.log_path.empty());
    FUZZ_CHECK(options.exec == !options.exec_process_spec.empty());
  }
  const std::string request(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> decoded;
  if (berth::conmon::DecodePodRequest(request, &decoded)) {
    FUZZ_CHECK(!decoded.empty());
    FUZZ_CHECK(berth::conmon::EncodePodRequest(decoded) == request);
  }
  return 0;
}
