// The memory section of the shared config: one entry per memseg list.
#pragma once

#include <atomic>
#include <cstdint>

#include "../runtime/shared_lock.hpp"

namespace mpod {

// One element of a memseg list's fbarray: where a segment lives.
struct Memseg {
  uint64_t addr;         // virtual address, the same in every process
  uint64_t len;          // bytes (the list's seg_size)
  uint64_t file_offset;  // offset in the list's backing file
  uint64_t page_size;
};
static_assert(sizeof(Memseg) == 32);

struct MemsegListLayout {
  uint64_t page_size;    // hardware page size: 2 MiB, 1 GiB, or the base page for plain files
  uint64_t seg_size;     // bytes per fbarray element (page_size, or 2 MiB for plain files)
  uint64_t base_va;      // start of this list's part of the shared range
  uint32_t capacity;     // segments the range can hold
  uint32_t hugepages;    // 1: hugetlbfs file, 0: plain file
  char fbarray_name[64];
  char backing_name[64];  // file name inside backing_dir
  char backing_dir[192];  // directory the primary used (a secondary may override with --huge-dir)
};
static_assert(sizeof(MemsegListLayout) == 352);

struct MemoryLayout {
  static constexpr uint32_t kMaxLists = 8;
  uint32_t n_lists;
  uint32_t reserved;
  // Bumped (release) after each growth, so sync() is O(1) when nothing changed.
  std::atomic<uint64_t> generation;
  LockRecord lock;  // guards growth
  MemsegListLayout lists[kMaxLists];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

}  // namespace mpod
