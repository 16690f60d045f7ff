// ProcessLock: a fast lock in shared memory whose holder may die.
//
// For hot shared structures (the heap) where SharedLock's system calls per
// acquisition cost too much. The lock word holds a token of the holding
// process: the first 8 bytes of its random process id, never a PID, so it
// means the same thing in every PID namespace. Taking a free lock is one
// CAS; waiters spin briefly, then sleep on a futex. A waiter that has waited
// `liveness_check_ns` looks the holder up in the process registry; if that
// process is dead it takes the lock over with a CAS (one waiter wins) and
// is told so, to repair the protected state.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "mpod/process.hpp"

namespace mpod {

struct ProcessLockWord {
  std::atomic<uint64_t> holder;    // 0: free; else the holder's token
  std::atomic<uint32_t> wake_seq;  // futex word: bumped by an unlock that finds waiters
  std::atomic<uint32_t> waiters;
};
static_assert(sizeof(ProcessLockWord) == 16 && std::atomic<uint64_t>::is_always_lock_free);

class ProcessLock {
 public:
  // The token that stands for process `id` in a lock word (never 0).
  static uint64_t token_of(const ProcessId& id) noexcept;

  // `domain_dir` is where the registry is; `what` names the lock in logs.
  ProcessLock(ProcessLockWord* word, std::string domain_dir, const ProcessId& self, std::string what);

  // Takes the lock, waiting as long as its holder lives. Returns true if the
  // holder died holding it: the caller must repair what the lock protects.
  bool lock();
  void unlock() noexcept;

  static constexpr uint64_t kLivenessCheckNs = 20'000'000;  // 20 ms

 private:
  bool holder_is_dead(uint64_t token) const noexcept;

  ProcessLockWord* w_;
  std::string domain_dir_, what_;
  uint64_t token_;
};

// RAII holder; `owner_died()` reports what lock() returned.
class ProcessLockGuard {
 public:
  explicit ProcessLockGuard(ProcessLock& l) : l_(l), died_(l.lock()) {}
  ~ProcessLockGuard() { l_.unlock(); }
  bool owner_died() const noexcept { return died_; }
  ProcessLockGuard(const ProcessLockGuard&) = delete;
  ProcessLockGuard& operator=(const ProcessLockGuard&) = delete;

 private:
  ProcessLock& l_;
  bool died_;
};

}  // namespace mpod
