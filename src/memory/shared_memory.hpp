// SharedMemory: this process's view of the memseg lists.
//
// The primary decides the layout, reserves one virtual range, creates a
// memseg list (fbarray + backing file) per page size and allocates the
// initial memory. A secondary reserves exactly the same range and maps the
// same segments there. Segments are only ever added (grow) while the domain
// lives; each process maps new ones lazily in sync(), recording what it has
// mapped in its own local fbarray per list, named by its process id.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../runtime/shared_lock.hpp"
#include "memory_layout.hpp"
#include "mpod/fbarray.hpp"
#include "mpod/runtime.hpp"

namespace mpod {

struct MemoryParams {
  std::string domain_dir;
  std::string file_prefix;
  std::string huge_dir;  // option; empty = all mounts
  bool no_huge = false;
  uint64_t initial_bytes = 0;
  uint64_t base_va = 0;  // 0 = default
  ProcessId self;
};

class SharedMemory {
 public:
  // Primary: plans and creates everything, filling `layout`. On failure
  // removes what it created.
  static std::unique_ptr<SharedMemory> create(const MemoryParams& p, MemoryLayout& layout,
                                              uint64_t* base, uint64_t* len);
  // Secondary: maps what the primary described. `huge_dir` overrides the backing directory.
  static std::unique_ptr<SharedMemory> attach(const MemoryParams& p, MemoryLayout& layout,
                                              uint64_t base, uint64_t len);
  ~SharedMemory();

  // Connects the growth lock (lives in the config file, opened by the caller).
  void set_lock(SharedLock* lock) noexcept { lock_ = lock; }

  // Maps segments other processes added since the last call. Cheap when none were.
  void sync();
  // Grows list `list` so that [base, base+bytes) of it is backed and mapped.
  // Caller holds the growth lock. Throws no_memory past capacity or out of pages.
  void grow(uint32_t list, uint64_t bytes);
  // Bytes of list `list` that are backed (a prefix of its range).
  uint64_t backed_bytes(uint32_t list) const;

  std::vector<MemoryUsage> usage() const;
  // Undoes create() after a failure: removes this layout's fbarrays and backing files.
  void remove_files() noexcept;
  const MemoryLayout& layout() const noexcept { return *layout_; }
  SharedLock* lock() noexcept { return lock_; }

  // Removes files left by processes that are gone: local fbarrays of `id`.
  static void remove_process_files(const std::string& domain_dir, const ProcessId& id) noexcept;
  // Removes every file of the domain's memory (before a primary recreates it).
  static void remove_stale_files(const std::string& domain_dir, const std::string& file_prefix,
                                 const std::string& huge_dir) noexcept;

 private:
  struct List;
  SharedMemory() = default;
  void map_list_segments(uint32_t i);
  std::string backing_path(const MemsegListLayout& l) const;

  MemoryParams params_;
  MemoryLayout* layout_ = nullptr;
  bool primary_ = false;
  void* base_ = nullptr;
  uint64_t len_ = 0;
  uint64_t seen_generation_ = ~0ull;
  SharedLock* lock_ = nullptr;
  std::vector<std::unique_ptr<List>> lists_;
};

}  // namespace mpod
