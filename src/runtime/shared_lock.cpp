#include "shared_lock.hpp"

#include <cstring>

#include "../os/os.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "registry.hpp"

namespace mpod {

SharedLock::SharedLock(int fd, uint32_t byte, LockRecord* record, std::string config_path,
                       std::string domain_dir, ProcessId self, std::string what)
    : fd_(fd), byte_(byte), rec_(record), config_path_(std::move(config_path)),
      domain_dir_(std::move(domain_dir)), what_(std::move(what)), self_(self) {}

bool SharedLock::lock(uint64_t timeout_ns) {
  local_.lock();
  const uint64_t deadline = os::monotonic_ns() + timeout_ns;
  uint64_t backoff = 20'000;  // 20 us, doubling to 2 ms: holders keep critical sections short
  try {
    while (!os::try_lock(fd_, os::LockKind::exclusive, config_path_, byte_, 1)) {
      if (os::monotonic_ns() >= deadline) {
        ProcessId holder;
        std::memcpy(holder.bytes.data(), rec_->holder, 16);
        uint64_t held_ms = (os::realtime_ns() - rec_->acquired_ns.load()) / 1'000'000;
        throw Error(Errc::timed_out,
                    "timed out waiting for the " + what_ + " lock in " + config_path_ +
                        ": held for " + std::to_string(held_ms) + " ms by " +
                        registry::describe(domain_dir_, holder) +
                        ", which is alive but not releasing it; inspect or stop that process",
                    config_path_);
      }
      os::sleep_ns(backoff);
      backoff = std::min<uint64_t>(backoff * 2, 2'000'000);
    }
  } catch (...) {
    local_.unlock();
    throw;
  }
  bool died = rec_->dirty.exchange(1, std::memory_order_acq_rel) != 0;
  if (died) {
    ProcessId prev;
    std::memcpy(prev.bytes.data(), rec_->holder, 16);
    MPOD_LOG(runtime, warning, "the %s lock was held by %s when it died; repairing", what_.c_str(),
             registry::describe(domain_dir_, prev).c_str());
  }
  std::memcpy(rec_->holder, self_.bytes.data(), 16);
  rec_->acquired_ns.store(os::realtime_ns(), std::memory_order_relaxed);
  return died;
}

void SharedLock::unlock() noexcept {
  rec_->dirty.store(0, std::memory_order_release);
  try {
    os::unlock(fd_, config_path_, byte_, 1);
  } catch (const Error& e) {
    MPOD_LOG(runtime, error, "%s", e.what());
  }
  local_.unlock();
}

}  // namespace mpod
