#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ctime>

#include "os.hpp"

namespace mpod::os {

// Shared (not FUTEX_PRIVATE) operations: the word lives in a file mapping
// that other processes map too, in any PID namespace; the kernel keys the
// futex by the page's inode and offset.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns) noexcept {
  timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000), static_cast<long>(timeout_ns % 1'000'000'000)};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, timeout_ns ? &ts : nullptr, nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>* word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

void spin_pause(uint32_t step) noexcept {
  if ((step & 63) == 63) {
    ::sched_yield();
    return;
  }
  cpu_relax();
}

}  // namespace mpod::os
