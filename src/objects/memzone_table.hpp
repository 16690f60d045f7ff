// The memzone section of the shared config.
//
// Crash consistency: an entry is filled while `state` is reserving and
// published by a release store of `used`. A holder that dies mid-reserve
// leaves a reserving entry, which the next holder (told by the lock that its
// owner died) returns to free. Lookups read only `used` entries.
#pragma once

#include <atomic>
#include <cstdint>

#include "../runtime/shared_lock.hpp"

namespace mpod {

struct MemzoneEntry {
  enum State : uint32_t { free_ = 0, reserving = 1, used = 2 };
  char name[32];
  uint64_t addr;
  uint64_t len;
  uint64_t align;
  uint64_t page_size;
  std::atomic<uint32_t> state;
  uint32_t list;
  uint8_t creator[16];
};
static_assert(sizeof(MemzoneEntry) == 88 && std::atomic<uint32_t>::is_always_lock_free);

struct MemzoneTable {
  static constexpr uint32_t kEntries = 2560;
  LockRecord lock;
  MemzoneEntry entries[kEntries];
};

}  // namespace mpod
