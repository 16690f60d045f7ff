// mpod-attach-probe [runtime options]: starts as an mpod secondary, signals
// ready, shuts down. The benchmark times exec-to-ready and reads peak RSS.
#include <cstdio>

#include "mpod/runtime.hpp"
#include "probe_common.hpp"

int main(int argc, char** argv) {
  try {
    auto rt = mpod::Runtime::start(argc, argv, nullptr);
    signal_ready();
  } catch (const mpod::Error& e) {
    std::fprintf(stderr, "mpod-attach-probe: %s\n", e.what());
    return 1;
  }
  return 0;
}
