#include "interrupt.hpp"

#include <signal.h>

#include <cstdio>

namespace mpod_bench {

namespace {

volatile sig_atomic_t g_interrupted = 0;

void on_signal(int) { g_interrupted = 1; }

}  // namespace

void throw_if_interrupted() {
  if (g_interrupted) throw Interrupted();
}

int run_interruptible(const char* program, const char* cleaned_up, const std::function<int()>& run) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;  // no SA_RESTART: a blocked poll returns and the run unwinds, cleaning up
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  try {
    return run();
  } catch (const Interrupted&) {
    std::fprintf(stderr, "%s: interrupted; %s\n", program, cleaned_up);
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace mpod_bench
