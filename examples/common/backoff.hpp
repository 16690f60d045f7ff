// What a polling loop does when it found nothing to do: yield the CPU for a
// while, then sleep, from 50 us up to 1 ms the longer it stays idle. DPDK's examples spin on dedicated cores; these
// share cores with each other (and with the test suite), so an idle poller
// must not take CPU time from the one that has work.
#pragma once

#include <chrono>
#include <cstdint>
#include <thread>

namespace examples {

class Backoff {
 public:
  void idle() {
    if (++idle_ < 32) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    if (sleep_us_ < 1000) sleep_us_ *= 2;
  }
  void reset() {
    idle_ = 0;
    sleep_us_ = 50;
  }

 private:
  uint32_t idle_ = 0;
  uint32_t sleep_us_ = 50;
};

}  // namespace examples
