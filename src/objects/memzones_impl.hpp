// The Memzones implementation over the shared table and SharedMemory.
#pragma once

#include "../memory/shared_memory.hpp"
#include "memzone_table.hpp"
#include "mpod/memzone.hpp"

namespace mpod {

class MemzonesImpl final : public Memzones {
 public:
  MemzonesImpl(MemzoneTable& table, SharedLock& lock, SharedMemory& memory, ProcessId self)
      : table_(table), lock_(lock), memory_(memory), self_(self) {}

  Memzone reserve(std::string_view name, uint64_t len, uint64_t align, uint64_t page_size) override;
  std::optional<Memzone> lookup(std::string_view name) override;
  void free(std::string_view name) override;
  std::vector<Memzone> list() override;

  // Bytes covered by memzones in memseg list `list`.
  uint64_t used_bytes(uint32_t list);

 private:
  void repair() noexcept;
  MemzoneEntry* find_locked(std::string_view name);

  MemzoneTable& table_;
  SharedLock& lock_;
  SharedMemory& memory_;
  ProcessId self_;
};

}  // namespace mpod
