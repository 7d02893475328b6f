#pragma once

#include <cstddef>
#include <string>

namespace berth {

// `n` bytes from the kernel's random source.
std::string RandomBytes(size_t n);

// A 64-hex-digit id, as runtimes give sandboxes and containers.
std::string NewRandomId();

}  // namespace berth
