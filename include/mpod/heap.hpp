// mpod::Heap — a malloc for shared memory (DPDK's rte_malloc).
//
// A heap is created by name (or opened: created by the first process that
// asks) and used from any process of the domain, in any pod: memory one
// process allocates another can use and free, and memory freed by one is
// reusable by all. It lives in memzones ("HP_<name>", then "HP_<name>.<k>"
// as it grows), so every block is at the same address in every process.
//
// Calls are serialised by a lock in shared memory that recovers from a
// holder that dies: the next caller rebuilds the heap's free lists by walking
// its blocks (every block's header stays walkable at each step), so a crash
// costs at most the block that was being allocated, never a deadlock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mpod {

class Runtime;

struct HeapOptions {
  uint64_t initial_bytes = 4u << 20;  // first region
  uint64_t grow_bytes = 4u << 20;     // each later region, at least (a big allocation gets what it needs)
  uint64_t max_bytes = 0;             // all regions together; 0: until shared memory runs out
};

struct HeapStats {
  uint64_t heap_bytes = 0;       // all regions
  uint64_t free_bytes = 0;       // in free blocks, headers excluded
  uint64_t allocated_bytes = 0;  // in allocated blocks, headers and padding included
  uint64_t greatest_free = 0;    // the largest single allocation that would succeed without growing
  uint32_t free_blocks = 0;
  uint32_t allocated_blocks = 0;
  uint32_t regions = 0;
  uint64_t repairs = 0;          // times the heap was rebuilt after a holder died
};

class Heap {
 public:
  static constexpr size_t kMaxNameLen = 24;      // "HP_" + name + ".NN" fits a memzone name
  static constexpr uint32_t kMaxRegions = 64;
  static constexpr uint64_t kMaxAlloc = 1ull << 40;

  // Creates heap `name`. Throws invalid_argument, already_exists, no_memory.
  static Heap create(Runtime& rt, std::string_view name, HeapOptions options = {});
  // Heap `name`; throws not_found naming it.
  static Heap lookup(Runtime& rt, std::string_view name);
  // Looks `name` up, creating it with `options` if nobody has (races between
  // processes are safe: all of them get the one heap).
  static Heap open(Runtime& rt, std::string_view name, HeapOptions options = {});
  // Frees every region. Every process must stop using the heap first.
  static void destroy(Runtime& rt, std::string_view name);
  static std::vector<Heap> list(Runtime& rt);

  Heap() = default;
  bool valid() const noexcept { return h_ != nullptr; }

  // `size` bytes (0 is allowed and returns a unique block) aligned to `align`
  // (a power of two; 0 means 64, like rte_malloc's cache-line default). Grows
  // the heap by a new region when no free block fits. Throws no_memory saying
  // what was asked, what is free and the limit; invalid_argument for a bad
  // alignment (not a power of two, or over kMaxAlloc) or a size over kMaxAlloc.
  void* alloc(size_t size, size_t align = 0);
  // The same, zeroed.
  void* zalloc(size_t size, size_t align = 0);
  // Like alloc/zalloc, but nullptr instead of throwing (the rte_malloc form).
  void* try_alloc(size_t size, size_t align = 0) noexcept;
  // Resizes `ptr` (nullptr: alloc) keeping its contents up to the smaller
  // size, in place when it can; the alignment of the block is kept. On
  // failure throws and leaves `ptr` untouched.
  void* realloc(void* ptr, size_t size);
  // Frees `ptr` (nullptr: nothing). Throws invalid_argument when `ptr` is not
  // a block this heap handed out (outside the heap, not a block start,
  // already free) and corrupt when the block's guard shows it was written
  // past its end; the heap is left as it was.
  void free(void* ptr);
  // The usable size of an allocated block (what was asked for).
  size_t size_of(const void* ptr) const;
  // True if `ptr` lies in one of this heap's regions.
  bool contains(const void* ptr) const noexcept;

  HeapStats stats() const;
  // Walks every block and checks headers, guards and free lists; throws
  // corrupt naming the first bad block. For tests and mpod info --check.
  void check() const;
  std::string name() const;

  struct Header;  // in shared memory; see src/objects/heap_blocks.hpp

 private:
  struct Local;  // this process's side: the lock handle, regions mapped so far
  Heap(Header* h, Runtime* rt);
  void* allocate(size_t size, size_t align, bool zero);
  void map_new_regions() const;
  void grow(uint64_t min_len, uint64_t asked);  // asked: for the error message
  Header* h_ = nullptr;
  Runtime* rt_ = nullptr;  // to grow, and to map regions other processes added
  std::shared_ptr<Local> local_;
};

}  // namespace mpod
