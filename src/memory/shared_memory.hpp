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
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../os/dir.hpp"
#include "../runtime/shared_lock.hpp"
#include "memory_layout.hpp"
#include "mpod/fbarray.hpp"
#include "mpod/runtime.hpp"

namespace mpod {

struct MemoryParams {
  os::Dir domain;         // opened and checked by the runtime
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
  // Secondary: maps what the primary described, after checking every value
  // it reads (layout_problem, and each memseg before it is mapped). Paths
  // come from this process's own options and mounts, never from the config.
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
  // Whether [addr, addr + len) lies in backed memory of one list (what sync() maps).
  bool backs(uint64_t addr, uint64_t len) const noexcept;

  std::vector<MemoryUsage> usage() const;
  // Undoes create() after a failure: removes this layout's fbarrays and backing files.
  void remove_files() noexcept;
  const MemoryLayout& layout() const noexcept { return *own_layout_; }
  SharedLock* lock() noexcept { return lock_; }

  // Removes files left by processes that are gone: local fbarrays of `id`.
  static void remove_process_files(const os::Dir& domain, const ProcessId& id) noexcept;
  // Removes the local fbarrays of every process `registered` says is not
  // (a reaper killed between removing a registration and them). One in use
  // is never removed: it is locked while mapped.
  static void remove_orphan_process_files(const os::Dir& domain,
                                          const std::function<bool(const ProcessId&)>& registered) noexcept;
  // Removes every file of the domain's memory (before a primary recreates
  // it). Entry by entry: one it cannot remove is logged and passed over.
  static void remove_stale_files(const os::Dir& domain, const std::string& file_prefix,
                                 const std::string& huge_dir) noexcept;

 private:
  struct List;
  SharedMemory() = default;
  void map_list_segments(uint32_t i);
  // Where list `l`'s backing file lives, from this process's options and mounts.
  os::Dir backing_dir(const MemsegListLayout& l) const;

  MemoryParams params_;
  // The list `i` of the layout: a secondary's own checked copy, the primary's shared one.
  const MemsegListLayout& layout(uint32_t i) const noexcept { return layout().lists[i]; }
  static constexpr uint32_t kMaxMapRun = 64;  // segments checked and mapped in one call

  MemoryLayout* layout_ = nullptr;            // shared, in the config: only its generation is read
  std::unique_ptr<MemoryLayout> own_layout_;  // this process's copy: the primary's plan, a secondary's checked one
  bool primary_ = false;
  void* base_ = nullptr;
  uint64_t len_ = 0;
  uint64_t seen_generation_ = ~0ull;
  SharedLock* lock_ = nullptr;
  std::vector<std::unique_ptr<List>> lists_;
};

// Why `layout` cannot be a memory layout the primary made for the range
// [base, base + len), or "" if it can. Pure: drives the fuzzer too.
std::string layout_problem(const MemoryLayout& layout, uint64_t base, uint64_t len);

}  // namespace mpod
