// Memzones: named, aligned regions of shared memory.
//
// Any process can reserve a memzone; every process can look it up by name and
// sees it at the same address. The table lives in the shared config and is
// protected by a lock that survives the death of its holder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mpod {

struct Memzone {
  std::string name;
  void* addr = nullptr;    // same in every process
  uint64_t len = 0;
  uint64_t page_size = 0;  // of the memory it lies in
  uint64_t align = 0;
};

class Memzones {
 public:
  static constexpr size_t kMaxNameLen = 31;  // bytes, excluding the terminator
  static constexpr size_t kMaxMemzones = 2560;

  // Reserves `len` bytes (> 0) aligned to `align` (a power of two, at least
  // 64) under `name`: 1..31 characters of [A-Za-z0-9_.-]. When `page_size` is
  // nonzero, only memory of that page size is used. The memory is zeroed.
  // Throws invalid_argument (bad name, size, alignment), already_exists
  // (name taken), no_memory (no free range big enough, or table full).
  virtual Memzone reserve(std::string_view name, uint64_t len, uint64_t align = 64,
                          uint64_t page_size = 0) = 0;
  // The memzone called `name`, or nullopt.
  virtual std::optional<Memzone> lookup(std::string_view name) = 0;
  // Frees `name`; throws not_found if there is no such memzone. Memory a
  // process still uses through a stale pointer is the caller's problem, as in DPDK.
  virtual void free(std::string_view name) = 0;
  // Every memzone, in address order.
  virtual std::vector<Memzone> list() = 0;

  // Throws invalid_argument explaining what is wrong with `name`, if anything.
  static void validate_name(std::string_view name);

 protected:
  ~Memzones() = default;
};

}  // namespace mpod
