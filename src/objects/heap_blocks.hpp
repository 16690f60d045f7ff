// The shared heap's memory layout and block operations (internal).
//
// A heap is a header plus up to Heap::kMaxRegions regions, each tiled by
// blocks. A block is a 64-byte header followed by its payload; sizes are
// multiples of 64 and include the header. Each block records its own size and
// its physical predecessor's, so neighbours are found in O(1) for
// coalescing, and a region can always be walked from its start.
//
// Free blocks sit in one of kBuckets doubly linked lists by size class
// (bucket b holds sizes in [64 << b, 64 << (b+1))). A busy block ends its
// payload with an 8-byte guard written at alloc and checked at free.
//
// Crash safety: every change that alters how a region is tiled is a single
// aligned 8-byte store of a `size` (the new block's header is written first,
// a swallowed header is wiped after), so a region stays walkable whatever
// instant its process dies at. Free lists, stats and prev_size are derived
// data: repair() rebuilds them all by walking.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "../runtime/process_lock.hpp"
#include "mpod/heap.hpp"

namespace mpod::heap {

constexpr uint32_t kBusy = 0x59535542;  // "BUSY"
constexpr uint32_t kFree = 0x45455246;  // "FREE"
constexpr uint64_t kGuard = 0x5f48504d5f444f4dull;
constexpr uint64_t kUnit = 64;          // block granule and header size
constexpr uint32_t kBuckets = 40;

struct Block {
  uint32_t magic;      // kBusy or kFree; anything else: not a block start
  uint32_t region;
  uint64_t size;       // whole block, this header included
  uint64_t prev_size;  // the physically previous block's; 0 for a region's first
  uint64_t user_size;  // busy: bytes asked for; the guard follows them
  uint64_t next_free;  // free: list links (addresses, 0 = none)
  uint64_t prev_free;
  uint64_t heap;       // address of the heap's Header
  uint64_t align;      // busy: alignment asked for (kept by realloc)
  unsigned char* data() noexcept { return reinterpret_cast<unsigned char*>(this) + kUnit; }
};
static_assert(sizeof(Block) == kUnit);

struct Region {
  uint64_t base;
  uint64_t len;
};

}  // namespace mpod::heap

namespace mpod {

struct Heap::Header {
  uint32_t magic;  // written last (release)
  uint32_t version;
  char name[kMaxNameLen + 1];
  HeapOptions options;
  alignas(64) ProcessLockWord lock;
  std::atomic<uint32_t> n_regions;  // release after a region is fully set up
  heap::Region regions[kMaxRegions];
  uint64_t free_heads[heap::kBuckets];
  uint64_t heap_bytes, free_bytes, allocated_bytes;
  uint32_t free_blocks, allocated_blocks;
  uint64_t repairs;
};

}  // namespace mpod

namespace mpod::heap {

using Header = Heap::Header;

// Every block this process follows must lie in its runtime's shared range:
// headers, links and region records are the group's to write, so one that
// points elsewhere (at this process's stack, say) is refused before it is
// used. The range is the process's own copy (one runtime per process), set
// by every Heap handle; unset (0, 0), nothing is checked (unit tests on
// plain memory).
struct Bounds {
  uint64_t lo = 0, len = 0;
};
inline Bounds g_bounds;
void set_bounds(uint64_t lo, uint64_t len) noexcept;
// Logs which address fell outside and stops the process: writing there could
// hand another process's privileges to whoever rewrote the heap.
[[noreturn]] void out_of_bounds(uint64_t addr, uint64_t len) noexcept;
// Checks that [addr, addr + len) lies in the shared range.
inline void check_span(uint64_t addr, uint64_t len) noexcept {
  const Bounds b = g_bounds;
  if (b.len && (addr - b.lo > b.len || len > b.len - (addr - b.lo))) [[unlikely]] out_of_bounds(addr, len);
}
inline Block* block_at(uint64_t addr) noexcept {
  check_span(addr, sizeof(Block));
  return reinterpret_cast<Block*>(addr);
}
inline uint64_t addr_of(const void* p) noexcept { return reinterpret_cast<uint64_t>(p); }
inline uint64_t round_unit(uint64_t v) noexcept { return (v + kUnit - 1) & ~(kUnit - 1); }

// The block size that holds `user` bytes and the guard.
inline uint64_t block_size_for(uint64_t user) noexcept { return kUnit + round_unit(user + sizeof(kGuard)); }

// Region index holding [p, p+1), or -1.
int region_of(const Header* h, uint64_t p) noexcept;
// The block physically after `b`, or nullptr at its region's end.
Block* next_block(const Header* h, const Block* b) noexcept;

void list_insert(Header* h, Block* b) noexcept;
void list_remove(Header* h, Block* b) noexcept;

// Adds a region of `len` bytes at `base` as one free block.
void add_region(Header* h, uint64_t base, uint64_t len) noexcept;
// A free block (removed from its list) with room for a block of `need`
// bytes whose payload is aligned to `align`; nullptr if none.
Block* take_fit(Header* h, uint64_t need, uint64_t align) noexcept;
// Turns free block `b` (off the lists) into a busy block of `need` bytes
// with its payload at `data`, giving back the slack before and after.
Block* carve(Header* h, Block* b, uint64_t data, uint64_t need) noexcept;
// Frees busy block `b`, merging it with free neighbours.
void release(Header* h, Block* b) noexcept;
// Shrinks busy block `b` to `need` bytes, giving back the tail; or grows it
// in place into a free successor. Returns false if growing does not fit.
bool resize_in_place(Header* h, Block* b, uint64_t need) noexcept;
// Writes the guard after `user` bytes of busy block `b`.
void set_user_size(Block* b, uint64_t user) noexcept;
bool guard_intact(Block* b) noexcept;

// Rebuilds free lists, prev_size links and stats by walking every region,
// merging adjacent free blocks. Throws corrupt naming a block that breaks
// the tiling (then nothing can be trusted).
void repair(Header* h);
// Walks and cross-checks everything; throws corrupt naming what is wrong.
void check(const Header* h);
// Largest payload a single free block could give (64-byte alignment).
uint64_t greatest_free(const Header* h) noexcept;

}  // namespace mpod::heap
