#include "interrupt.hpp"

#include <signal.h>

#include <cstdio>
#include <cstring>

namespace mpod_bench {

namespace {

volatile sig_atomic_t g_interrupted = 0;  // the signal's number once one arrived
volatile sig_atomic_t g_sender = 0;       // the pid that sent it (0: the kernel, e.g. a terminal's ^C)

void on_signal(int sig, siginfo_t* info, void*) {
  g_sender = info ? info->si_pid : 0;
  g_interrupted = sig;
}

}  // namespace

void throw_if_interrupted() {
  if (g_interrupted) throw Interrupted();
}

int run_interruptible(const char* program, const char* cleaned_up, const std::function<int()>& run) {
  struct sigaction sa {};
  sa.sa_sigaction = on_signal;  // no SA_RESTART: a blocked poll returns and the run unwinds, cleaning up
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  try {
    return run();
  } catch (const Interrupted&) {
    // Who sent it: a driver stopped by someone else's clean-up should say so.
    std::fprintf(stderr, "%s: interrupted by SIG%s from pid %d; %s\n", program, sigabbrev_np(int(g_interrupted)),
                 int(g_sender), cleaned_up);
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace mpod_bench
