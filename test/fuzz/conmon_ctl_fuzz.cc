// berth-conmon's ctl fifo: the input arrives in reads split at NUL bytes (the protocol has none).

#include <cstddef>
#include <cstdint>
#include <string>

#include "conmon/ctl.h"
#include "fuzz_check.h"

using berth::conmon::kMaxCtlPending;
using berth::conmon::TakeCtlMessages;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string pending;
  size_t start = 0;
  for (;;) {
    const size_t nul = input.find('\0', start);
    pending.append(input, start, nul == std::string::npos ? std::string::npos : nul - start);
    (void)TakeCtlMessages(&pending);
    FUZZ_CHECK(pending.size() <= kMaxCtlPending);
    FUZZ_CHECK(pending.find('\n') == std::string::npos);
    if (nul == std::string::npos) break;
    start = nul + 1;
  }
  return 0;
}
