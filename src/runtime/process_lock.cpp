#include "process_lock.hpp"

#include <cstring>

#include "../os/os.hpp"
#include "mpod/log.hpp"
#include "registry.hpp"

namespace mpod {

uint64_t ProcessLock::token_of(const ProcessId& id) noexcept {
  uint64_t t;
  std::memcpy(&t, id.bytes.data(), sizeof t);
  return t ? t : 1;
}

ProcessLock::ProcessLock(ProcessLockWord* word, std::string domain_dir, const ProcessId& self, std::string what)
    : w_(word), domain_dir_(std::move(domain_dir)), what_(std::move(what)), token_(token_of(self)) {}

bool ProcessLock::holder_is_dead(uint64_t token) const noexcept {
  if (token == token_) return false;  // another thread of this process
  try {
    for (auto& p : registry::list(domain_dir_))
      if (token_of(p.id) == token) return !p.alive;
  } catch (const Error& e) {
    MPOD_LOG(runtime, warning, "%s: cannot read the process registry to test its holder: %s", what_.c_str(), e.what());
    return false;  // keep waiting rather than break a live holder's lock
  }
  return true;  // unregistered: it exited or was reaped without letting go
}

bool ProcessLock::lock() {
  uint64_t expected = 0;
  if (w_->holder.compare_exchange_strong(expected, token_, std::memory_order_acquire, std::memory_order_relaxed))
    return false;
  // Spin a little: critical sections are short.
  for (uint32_t step = 0; step < 256; ++step) {
    os::spin_pause(step);
    expected = 0;
    if (w_->holder.load(std::memory_order_relaxed) == 0 &&
        w_->holder.compare_exchange_strong(expected, token_, std::memory_order_acquire, std::memory_order_relaxed))
      return false;
  }
  w_->waiters.fetch_add(1, std::memory_order_seq_cst);
  uint64_t since = os::monotonic_ns(), last_holder = 0;
  bool died = false;
  for (;;) {
    const uint32_t seq = w_->wake_seq.load(std::memory_order_seq_cst);
    expected = 0;
    if (w_->holder.compare_exchange_strong(expected, token_, std::memory_order_seq_cst)) break;
    if (expected != last_holder) {  // a new holder: its time starts now
      last_holder = expected;
      since = os::monotonic_ns();
    } else if (os::monotonic_ns() - since > kLivenessCheckNs) {
      if (holder_is_dead(expected) &&
          w_->holder.compare_exchange_strong(expected, token_, std::memory_order_seq_cst)) {
        MPOD_LOG(runtime, warning, "%s: its holder (process token %016llx) died holding it; taking it over and repairing",
                 what_.c_str(), static_cast<unsigned long long>(last_holder));
        died = true;
        break;
      }
      since = os::monotonic_ns();
    }
    os::futex_wait(&w_->wake_seq, seq, kLivenessCheckNs);
  }
  w_->waiters.fetch_sub(1, std::memory_order_relaxed);
  return died;
}

void ProcessLock::unlock() noexcept {
  w_->holder.store(0, std::memory_order_seq_cst);
  if (w_->waiters.load(std::memory_order_seq_cst) != 0) {
    w_->wake_seq.fetch_add(1, std::memory_order_seq_cst);
    os::futex_wake(&w_->wake_seq);
  }
}

}  // namespace mpod
