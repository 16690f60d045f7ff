// SharedLock: a lock in the shared config that survives its holder's death.
//
// The lock itself is an OFD write lock on one byte of the config file, so the
// kernel releases it when the holder dies, in whatever namespace. Beside it,
// a LockRecord in shared memory names the holder by process id (never by
// PID or TID) and carries a `dirty` flag set while the lock is held: a new
// holder that finds it still set knows the previous one died inside the
// critical section, and is told so, to repair the protected state.
// Threads of one process share the file description, so an in-process mutex
// orders them first.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "mpod/process.hpp"

namespace mpod {

struct LockRecord {
  std::atomic<uint32_t> dirty;  // 1 while held
  uint32_t reserved;
  uint8_t holder[16];           // process id of the holder
  std::atomic<uint64_t> acquired_ns;
};
static_assert(sizeof(LockRecord) == 32 && std::atomic<uint64_t>::is_always_lock_free);

class SharedLock {
 public:
  // `byte`: the config-file byte this lock owns. `what` names it in errors.
  SharedLock(int fd, uint32_t byte, LockRecord* record, std::string config_path,
             std::string domain_dir, ProcessId self, std::string what);

  // Waits up to `timeout_ns`. Returns true if the previous holder died while
  // holding it (the caller must repair). Throws timed_out naming the holder.
  bool lock(uint64_t timeout_ns = 10'000'000'000ull);
  void unlock() noexcept;

 private:
  int fd_;
  uint32_t byte_;
  LockRecord* rec_;
  std::string config_path_, domain_dir_, what_;
  ProcessId self_;
  std::mutex local_;
};

// RAII holder; `owner_died()` reports what lock() returned.
class SharedLockGuard {
 public:
  explicit SharedLockGuard(SharedLock& l) : l_(l), died_(l.lock()) {}
  ~SharedLockGuard() { l_.unlock(); }
  bool owner_died() const noexcept { return died_; }
  SharedLockGuard(const SharedLockGuard&) = delete;
  SharedLockGuard& operator=(const SharedLockGuard&) = delete;

 private:
  SharedLock& l_;
  bool died_;
};

}  // namespace mpod
