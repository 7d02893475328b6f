// Placeholder for a helper that later work implements: it fails loudly instead of pretending.

#include <cstdio>

int main() {
  std::fprintf(stderr, "%s: not implemented yet in this build of berth\n", BERTH_HELPER_NAME);
  return 1;
}
