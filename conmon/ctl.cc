#include "conmon/ctl.h"

#include <cstdio>

namespace berth::conmon {

std::vector<CtlMessage> TakeCtlMessages(std::string* pending) {
  std::vector<CtlMessage> messages;
  size_t start = 0;
  for (size_t nl; (nl = pending->find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string line = pending->substr(start, nl - start);
    CtlMessage m;
    if (std::sscanf(line.c_str(), "%d %d %d", &m.type, &m.height, &m.width) == 3) {
      messages.push_back(m);
    }
  }
  pending->erase(0, start);
  if (pending->size() > kMaxCtlPending) pending->clear();
  return messages;
}

}  // namespace berth::conmon
