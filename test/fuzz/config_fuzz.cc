// berthd's YAML configuration. A document that loads and validates prints (ToYaml) as a document
// that loads back to the same configuration.

#include <cstddef>
#include <cstdint>
#include <string>

#include "config/loader.h"
#include "fuzz_check.h"

using berth::config::ApplyYaml;
using berth::config::Config;
using berth::config::Origins;
using berth::config::ToJson;
using berth::config::ToYaml;
using berth::config::Validate;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view yaml(reinterpret_cast<const char*>(data), size);
  Config config;
  Origins origins;
  if (!ApplyYaml(yaml, "fuzz.yaml", config, &origins).ok()) return 0;
  (void)ToJson(config);
  if (!Validate(config, &origins).ok()) return 0;
  const std::string printed = ToYaml(config);
  Config again;
  const absl::Status reloaded = ApplyYaml(printed, "printed.yaml", again);
  if (!reloaded.ok() || !(again == config)) {
    std::fprintf(stderr, "printed:\n%s\nreloaded: %s\nreprinted:\n%s\n", printed.c_str(),
                 reloaded.ToString().c_str(), ToYaml(again).c_str());
  }
  FUZZ_CHECK(reloaded.ok());
  FUZZ_CHECK(again == config);
  return 0;
}
