// SIGINT and SIGTERM for the examples, the way DPDK's examples use them: a
// first signal asks the program to stop cleanly (it finishes its work, detaches
// and prints its summary); a second one, or one that arrives before the
// runtime has started, ends the process at once.
//
// Call StopSignals::install() first thing in main, before Runtime::start: it
// blocks the signals in every thread started afterwards (the runtime's own
// threads never see them; their system calls are never interrupted) and
// takes them in one watcher thread with sigwait. This also works for PID 1 of
// a pod, which the kernel shields from signals it has no handler for.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace examples {

class StopSignals {
 public:
  static void install() {
    sigset_t set = stop_set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread([] {
      sigset_t s = stop_set();
      for (;;) {
        int sig = 0;
        if (sigwait(&s, &sig) != 0) continue;
        if (!armed_.load() || signal_.load() != 0) _exit(128 + sig);
        signal_.store(sig);
      }
    }).detach();
  }
  // From now on a first signal only sets requested(): call once the runtime is up.
  static void arm() { armed_.store(true); }
  static bool requested() { return signal_.load(std::memory_order_relaxed) != 0; }
  static int signal() { return signal_.load(); }

 private:
  static sigset_t stop_set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
  }
  static inline std::atomic<bool> armed_{false};
  static inline std::atomic<int> signal_{0};
};

}  // namespace examples
