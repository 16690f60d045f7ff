#include "heap_blocks.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod::heap {

namespace {

uint32_t bucket_of(uint64_t size) noexcept {
  const uint32_t b = uint32_t(std::bit_width(size / kUnit)) - 1;
  return b < kBuckets ? b : kBuckets - 1;
}

// The one store that changes how a region is tiled (see the file comment of
// heap_blocks.hpp): release, so headers written before it land first.
void set_size(Block* b, uint64_t size) noexcept { std::atomic_ref<uint64_t>(b->size).store(size, std::memory_order_release); }

void fix_next_prev_size(const Header* h, Block* b) noexcept {
  if (Block* n = next_block(h, b)) n->prev_size = b->size;
}

// Cuts `b` at `off` (a multiple of kUnit, 0 < off < size): the tail becomes a
// new block with magic `tail_magic`, returned. Neither part is put on a list.
Block* split(Header* h, Block* b, uint64_t off, uint32_t tail_magic) noexcept {
  Block* t = block_at(addr_of(b) + off);
  *t = Block{};
  t->magic = tail_magic;
  t->region = b->region;
  t->size = b->size - off;
  t->prev_size = off;
  t->heap = addr_of(h);
  set_size(b, off);
  fix_next_prev_size(h, t);
  return t;
}

// `b` swallows its successor `n` (already off any list).
void absorb_next(Header* h, Block* b, Block* n) noexcept {
  set_size(b, b->size + n->size);
  n->magic = 0;
  fix_next_prev_size(h, b);
}

// Merges free block `b` (off the lists) with a free successor.
void merge_with_free_next(Header* h, Block* b) noexcept {
  Block* n = next_block(h, b);
  if (n && n->magic == kFree) {
    list_remove(h, n);
    absorb_next(h, b, n);
  }
}

[[noreturn]] void bad_block(const Header* h, uint64_t at, const std::string& what) {
  char addr[32];
  std::snprintf(addr, sizeof addr, "%#llx", static_cast<unsigned long long>(at));
  throw Error(Errc::corrupt, "heap '" + std::string(h->name, strnlen(h->name, sizeof h->name)) + "': block at " + addr + " " + what +
                                 "; shared memory was overwritten. Destroy the heap (or restart the domain)");
}

}  // namespace

void set_bounds(uint64_t lo, uint64_t len) noexcept { g_bounds = Bounds{lo, len}; }

void out_of_bounds(uint64_t addr, uint64_t len) noexcept {
  MPOD_LOG(heap, error,
           "a heap block at %#llx (%llu bytes) lies outside this process's shared memory [%#llx, %#llx): the "
           "heap's shared memory was overwritten, perhaps by another process of the group; stopping this process "
           "rather than writing there. Destroy the heap (or restart the domain)",
           static_cast<unsigned long long>(addr), static_cast<unsigned long long>(len),
           static_cast<unsigned long long>(g_bounds.lo), static_cast<unsigned long long>(g_bounds.lo + g_bounds.len));
  std::abort();
}

int region_of(const Header* h, uint64_t p) noexcept {
  const uint32_t n = std::min(h->n_regions.load(std::memory_order_acquire), Heap::kMaxRegions);
  for (uint32_t i = 0; i < n; ++i)
    if (p >= h->regions[i].base && p < h->regions[i].base + h->regions[i].len) return int(i);
  return -1;
}

Block* next_block(const Header* h, const Block* b) noexcept {
  const uint64_t end = addr_of(b) + b->size;
  if (b->region >= Heap::kMaxRegions) return nullptr;  // a record index the group wrote: not ours to follow
  const Region& r = h->regions[b->region];
  return end < r.base + r.len ? block_at(end) : nullptr;
}

void list_insert(Header* h, Block* b) noexcept {
  uint64_t& head = h->free_heads[bucket_of(b->size)];
  b->prev_free = 0;
  b->next_free = head;
  if (head) block_at(head)->prev_free = addr_of(b);
  head = addr_of(b);
  h->free_blocks++;
  h->free_bytes += b->size - kUnit;
}

void list_remove(Header* h, Block* b) noexcept {
  if (b->prev_free)
    block_at(b->prev_free)->next_free = b->next_free;
  else
    h->free_heads[bucket_of(b->size)] = b->next_free;
  if (b->next_free) block_at(b->next_free)->prev_free = b->prev_free;
  b->next_free = b->prev_free = 0;
  h->free_blocks--;
  h->free_bytes -= b->size - kUnit;
}

void add_region(Header* h, uint64_t base, uint64_t len) noexcept {
  const uint32_t i = std::min(h->n_regions.load(std::memory_order_relaxed), Heap::kMaxRegions);
  Block* b = block_at(base);
  *b = Block{};
  b->magic = kFree;
  b->region = i;
  b->size = len;
  b->heap = addr_of(h);
  h->regions[i] = Region{base, len};
  h->n_regions.store(i + 1, std::memory_order_release);
  h->heap_bytes += len;
  list_insert(h, b);
}

Block* take_fit(Header* h, uint64_t need, uint64_t align) noexcept {
  for (uint32_t bucket = bucket_of(need); bucket < kBuckets; ++bucket) {
    for (uint64_t at = h->free_heads[bucket]; at; at = block_at(at)->next_free) {
      Block* b = block_at(at);
      const uint64_t data = (at + kUnit + align - 1) & ~(align - 1);
      if (data - kUnit + need <= at + b->size) {
        list_remove(h, b);
        return b;
      }
    }
  }
  return nullptr;
}

Block* carve(Header* h, Block* b, uint64_t data, uint64_t need) noexcept {
  check_span(addr_of(b), b->size);  // what is handed out, and split, lies in shared memory
  const uint64_t gap = data - kUnit - addr_of(b);
  if (gap) {  // alignment slack in front stays free
    Block* front = b;
    b = split(h, front, gap, kFree);
    list_insert(h, front);
  }
  if (b->size - need >= kUnit) list_insert(h, split(h, b, need, kFree));
  b->magic = kBusy;
  h->allocated_blocks++;
  h->allocated_bytes += b->size;
  return b;
}

void release(Header* h, Block* b) noexcept {
  h->allocated_blocks--;
  h->allocated_bytes -= b->size;
  b->magic = kFree;
  merge_with_free_next(h, b);
  if (b->prev_size) {
    Block* p = block_at(addr_of(b) - b->prev_size);
    if (p->magic == kFree) {
      list_remove(h, p);
      absorb_next(h, p, b);
      b = p;
    }
  }
  list_insert(h, b);
}

bool resize_in_place(Header* h, Block* b, uint64_t need) noexcept {
  if (need > b->size) {
    Block* n = next_block(h, b);
    if (!n || n->magic != kFree || b->size + n->size < need) return false;
    list_remove(h, n);
    h->allocated_bytes += n->size;
    absorb_next(h, b, n);
  }
  if (b->size - need >= kUnit) {
    h->allocated_bytes -= b->size - need;
    Block* tail = split(h, b, need, kFree);
    merge_with_free_next(h, tail);
    list_insert(h, tail);
  }
  return true;
}

void set_user_size(Block* b, uint64_t user) noexcept {
  b->user_size = user;
  std::memcpy(b->data() + user, &kGuard, sizeof kGuard);
}

bool guard_intact(Block* b) noexcept {
  uint64_t g;
  std::memcpy(&g, b->data() + b->user_size, sizeof g);
  return g == kGuard && kUnit + b->user_size + sizeof g <= b->size;
}

void repair(Header* h) {
  for (auto& head : h->free_heads) head = 0;
  h->free_bytes = h->allocated_bytes = 0;
  h->free_blocks = h->allocated_blocks = 0;
  h->heap_bytes = 0;
  const uint32_t n = std::min(h->n_regions.load(std::memory_order_relaxed), Heap::kMaxRegions);
  for (uint32_t i = 0; i < n; ++i) {
    const Region r = h->regions[i];
    h->heap_bytes += r.len;
    Block* prev = nullptr;
    for (uint64_t at = r.base; at < r.base + r.len;) {
      Block* b = block_at(at);
      if ((b->magic != kBusy && b->magic != kFree) || b->size < kUnit || b->size % kUnit ||
          at + b->size > r.base + r.len)
        bad_block(h, at, "does not start a valid block (magic, or size " + std::to_string(b->size) + ")");
      b->region = i;
      b->prev_size = prev ? prev->size : 0;
      if (b->magic == kFree && prev && prev->magic == kFree) {  // a merge the dead process left half done
        set_size(prev, prev->size + b->size);
        b->magic = 0;
        at = addr_of(prev) + prev->size;
        continue;
      }
      prev = b;
      at += b->size;
    }
    for (uint64_t at = r.base; at < r.base + r.len; at += block_at(at)->size) {
      Block* b = block_at(at);
      if (b->magic == kFree) {
        list_insert(h, b);
      } else {
        h->allocated_blocks++;
        h->allocated_bytes += b->size;
      }
    }
  }
  h->repairs++;
}

void check(const Header* h) {
  uint64_t free_bytes = 0, busy_bytes = 0, heap_bytes = 0;
  uint32_t free_blocks = 0, busy_blocks = 0;
  const uint32_t n = std::min(h->n_regions.load(std::memory_order_acquire), Heap::kMaxRegions);
  for (uint32_t i = 0; i < n; ++i) {
    const Region r = h->regions[i];
    heap_bytes += r.len;
    const Block* prev = nullptr;
    for (uint64_t at = r.base; at < r.base + r.len;) {
      Block* b = block_at(at);
      if ((b->magic != kBusy && b->magic != kFree) || b->size < kUnit || b->size % kUnit ||
          at + b->size > r.base + r.len)
        bad_block(h, at, "does not start a valid block");
      if (b->region != i || b->heap != addr_of(h)) bad_block(h, at, "names the wrong region or heap");
      if (b->prev_size != (prev ? prev->size : 0)) bad_block(h, at, "has a wrong predecessor size");
      if (b->magic == kFree) {
        if (prev && prev->magic == kFree) bad_block(h, at, "is free after a free block (not merged)");
        free_blocks++;
        free_bytes += b->size - kUnit;
      } else {
        if (!guard_intact(b)) bad_block(h, at, "was written past the end of its " + std::to_string(b->user_size) + " bytes");
        busy_blocks++;
        busy_bytes += b->size;
      }
      prev = b;
      at += b->size;
    }
  }
  uint32_t listed = 0;
  for (uint32_t bucket = 0; bucket < kBuckets; ++bucket) {
    uint64_t prev = 0;
    for (uint64_t at = h->free_heads[bucket]; at; prev = at, at = block_at(at)->next_free) {
      Block* b = block_at(at);
      if (region_of(h, at) < 0 || b->magic != kFree) bad_block(h, at, "is on a free list but is not a free block");
      if (bucket_of(b->size) != bucket || b->prev_free != prev) bad_block(h, at, "is misfiled in the free lists");
      if (++listed > free_blocks) bad_block(h, at, "is on a free list more than once");
    }
  }
  if (listed != free_blocks || free_blocks != h->free_blocks || busy_blocks != h->allocated_blocks ||
      free_bytes != h->free_bytes || busy_bytes != h->allocated_bytes || heap_bytes != h->heap_bytes)
    throw Error(Errc::corrupt, "heap '" + std::string(h->name, strnlen(h->name, sizeof h->name)) + "': counts disagree with its blocks (" +
                                   std::to_string(free_blocks) + " free blocks walked, " + std::to_string(listed) +
                                   " listed, " + std::to_string(h->free_blocks) + " counted)");
}

uint64_t greatest_free(const Header* h) noexcept {
  for (int bucket = kBuckets - 1; bucket >= 0; --bucket) {
    uint64_t best = 0;
    for (uint64_t at = h->free_heads[bucket]; at; at = block_at(at)->next_free) best = std::max(best, block_at(at)->size);
    if (best) return best >= kUnit + sizeof(kGuard) ? best - kUnit - sizeof(kGuard) : 0;
  }
  return 0;
}

}  // namespace mpod::heap
