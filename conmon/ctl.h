#pragma once

#include <string>
#include <vector>

namespace berth::conmon {

// A line of the ctl fifo, upstream conmon's protocol: "<type> <height> <width>\n". Type 1 resizes
// the terminal to height x width, type 2 reopens the log file; the numbers are what the writer
// sent, unchecked.
struct CtlMessage {
  int type = 0;
  int height = 0;
  int width = 0;
};
inline constexpr int kCtlResize = 1;
inline constexpr int kCtlReopenLog = 2;

// The longest incomplete line kept for the next read; beyond it the run is dropped.
inline constexpr size_t kMaxCtlPending = 4096;

// Takes the complete lines out of `pending` (what was read from the fifo, after what an earlier
// call left) and returns their messages in order. Lines that do not start with three numbers are
// skipped; an incomplete last line stays in `pending` unless it is over kMaxCtlPending.
std::vector<CtlMessage> TakeCtlMessages(std::string* pending);

}  // namespace berth::conmon
