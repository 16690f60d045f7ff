// Heap: the public calls. Block-level work is in heap_blocks.cpp; this file
// does naming, validation, locking, growth and error messages.
#include "mpod/heap.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <new>

#include "../os/os.hpp"
#include "heap_blocks.hpp"
#include "object_header.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "mpod/memzone.hpp"
#include "mpod/runtime.hpp"

namespace mpod {

namespace {
constexpr uint32_t kHeapMagic = 0x50414548;  // "HEAP"
constexpr uint32_t kHeapVersion = 1;
constexpr const char* kPrefix = "HP_";
constexpr uint64_t kMinRegion = 64 * 1024;

using heap::Block;
using heap::kUnit;

std::string region_memzone(std::string_view heap_name, uint32_t region) {
  std::string n = kPrefix + std::string(heap_name);
  if (region) n += "." + std::to_string(region);
  return n;
}

void validate_heap_name(std::string_view name) {
  if (name.empty() || name.size() > Heap::kMaxNameLen || name.find('.') != std::string_view::npos)
    throw Error(Errc::invalid_argument, "heap name '" + std::string(name) + "' must be 1 to " +
                                            std::to_string(Heap::kMaxNameLen) + " characters, without '.'");
  Memzones::validate_name(region_memzone(name, 0));
}

std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

// The heap's name as stored, within its field (the header is the group's to write).
std::string_view name_of(const Heap::Header* h) { return {h->name, strnlen(h->name, sizeof h->name)}; }
std::string what_heap(const Heap::Header* h) { return "heap '" + std::string(name_of(h)) + "'"; }

// The busy block whose payload starts at `p`; throws naming what `p` is instead.
Block* busy_block_of(Heap::Header* h, const void* p, const char* op) {
  const uint64_t a = heap::addr_of(p);
  const int region = heap::region_of(h, a);
  if (region < 0)
    throw Error(Errc::invalid_argument, what_heap(h) + ": cannot " + op + " " + hex(p) +
                                            ": it does not lie in this heap; it came from elsewhere (another heap, "
                                            "a mempool, malloc): give it back there");
  Block* b = heap::block_at(a - kUnit);
  const bool start = a % kUnit == 0 && a - kUnit >= h->regions[region].base && b->heap == heap::addr_of(h) &&
                     b->region == uint32_t(region);
  if (start && b->magic == heap::kFree)
    throw Error(Errc::invalid_argument, what_heap(h) + ": cannot " + op + " " + hex(p) +
                                            ": it is already free (a double free); the heap is unchanged");
  if (!start || b->magic != heap::kBusy)
    throw Error(Errc::invalid_argument, what_heap(h) + ": cannot " + op + " " + hex(p) +
                                            ": it lies inside the heap but is not the start of a block it handed "
                                            "out; the heap is unchanged");
  return b;
}

void check_guard(Heap::Header* h, Block* b, const char* op) {
  if (!heap::guard_intact(b))
    throw Error(Errc::corrupt, what_heap(h) + ": cannot " + op + " " + hex(b->data()) + ": the " +
                                   std::to_string(b->user_size) +
                                   "-byte block was written past its end (its guard is overwritten); it is left "
                                   "allocated so nothing else is corrupted. Fix the overflow");
}

}  // namespace

struct Heap::Local {
  Local(Header* h, Runtime& rt)
      : lock(&h->lock, rt.domain_dir(), rt.self().id, "lock of " + what_heap(h)) {}
  ProcessLock lock;
  std::atomic<uint32_t> mapped_regions{1};  // region 0 lies in the memzone we looked up
};

Heap::Heap(Header* h, Runtime* rt) : h_(h), rt_(rt), local_(std::make_shared<Local>(h, *rt)) {
  heap::set_bounds(heap::addr_of(rt->base_addr()), rt->va_len());
}

// ---- create, lookup, destroy ----

Heap Heap::create(Runtime& rt, std::string_view name, HeapOptions o) {
  validate_heap_name(name);
  const std::string what = "heap '" + std::string(name) + "'";
  if (o.initial_bytes < kMinRegion || o.grow_bytes < kMinRegion)
    throw Error(Errc::invalid_argument, what + ": initial_bytes and grow_bytes must be at least " +
                                            std::to_string(kMinRegion) + " bytes");
  if (o.max_bytes && o.max_bytes < o.initial_bytes)
    throw Error(Errc::invalid_argument, what + ": max_bytes (" + std::to_string(o.max_bytes) +
                                            ") is below initial_bytes (" + std::to_string(o.initial_bytes) + ")");
  const uint64_t header = heap::round_unit(sizeof(Header));
  const uint64_t region = heap::round_unit(o.initial_bytes);
  Memzone mz;
  try {
    mz = rt.memzones().reserve(region_memzone(name, 0), header + region, kUnit);
  } catch (const Error& e) {
    if (e.code() == Errc::already_exists)
      throw Error(Errc::already_exists, "a heap named '" + std::string(name) + "' already exists in " + rt.domain_dir() +
                                            "; look it up with Heap::lookup (or Heap::open)");
    throw Error(e.code(), "cannot create " + what + " of " + std::to_string(o.initial_bytes) + " bytes: " + e.what());
  }
  auto* h = new (mz.addr) Header{};
  h->version = kHeapVersion;
  std::memcpy(h->name, name.data(), name.size());
  h->options = o;
  heap::add_region(h, heap::addr_of(mz.addr) + header, region);
  std::atomic_ref<uint32_t>(h->magic).store(kHeapMagic, std::memory_order_release);
  return Heap(h, &rt);
}

Heap Heap::lookup(Runtime& rt, std::string_view name) {
  validate_heap_name(name);
  auto mz = rt.memzones().lookup(region_memzone(name, 0));
  if (!mz)
    throw Error(Errc::not_found, "no heap named '" + std::string(name) + "' in " + rt.domain_dir() +
                                     "; create it first (Heap::create or Heap::open), or check the name and --file-prefix");
  auto* h = static_cast<Header*>(mz->addr);
  wait_initialised(*mz, &h->magic, kHeapMagic, &h->version, kHeapVersion, "heap", name);
  Heap heap(h, &rt);
  heap.map_new_regions();
  return heap;
}

Heap Heap::open(Runtime& rt, std::string_view name, HeapOptions options) {
  for (;;) {
    try {
      return lookup(rt, name);
    } catch (const Error& e) {
      if (e.code() != Errc::not_found) throw;
    }
    try {
      return create(rt, name, options);
    } catch (const Error& e) {
      if (e.code() != Errc::already_exists) throw;  // another process created it first: look again
    }
  }
}

void Heap::destroy(Runtime& rt, std::string_view name) {
  Heap heap = lookup(rt, name);
  const uint32_t n = std::min(heap.h_->n_regions.load(std::memory_order_acquire), kMaxRegions);
  for (uint32_t i = n; i-- > 0;) rt.memzones().free(region_memzone(name, i));
}

std::vector<Heap> Heap::list(Runtime& rt) {
  std::vector<Heap> out;
  for (auto& z : rt.memzones().list()) {
    if (!z.name.starts_with(kPrefix) || z.name.find('.') != std::string::npos || z.len < sizeof(Header)) continue;
    auto* h = static_cast<Header*>(z.addr);
    if (std::atomic_ref<uint32_t>(h->magic).load(std::memory_order_acquire) == kHeapMagic) out.push_back(Heap(h, &rt));
  }
  return out;
}

// ---- regions ----

void Heap::map_new_regions() const {
  const uint32_t n = h_->n_regions.load(std::memory_order_acquire);
  if (n <= local_->mapped_regions.load(std::memory_order_relaxed)) return;
  // A lookup maps every segment other processes added, the new regions' included.
  if (!rt_->memzones().lookup(region_memzone(name_of(h_), n - 1)))
    throw Error(Errc::corrupt, what_heap(h_) + ": its region " + std::to_string(n - 1) + " (memzone " +
                                   region_memzone(name_of(h_), n - 1) + ") is missing");
  local_->mapped_regions.store(n, std::memory_order_relaxed);
}

void Heap::grow(uint64_t min_len, uint64_t asked) {
  const uint32_t k = h_->n_regions.load(std::memory_order_relaxed);
  const HeapOptions& o = h_->options;
  uint64_t len = heap::round_unit(std::max(o.grow_bytes, min_len));
  if (o.max_bytes && h_->heap_bytes + len > o.max_bytes) len = heap::round_unit(min_len);
  const auto refuse = [&](const std::string& why) {
    return Error(Errc::no_memory, what_heap(h_) + ": cannot allocate " + std::to_string(asked) +
                                      " bytes: the largest free block holds " +
                                      std::to_string(heap::greatest_free(h_)) + " and " + why);
  };
  if (k >= kMaxRegions)
    throw refuse("the heap has its maximum of " + std::to_string(kMaxRegions) + " regions; free memory, or create "
                 "the heap with a larger grow_bytes");
  if (o.max_bytes && h_->heap_bytes + len > o.max_bytes)
    throw refuse("growing past max_bytes (" + std::to_string(o.max_bytes) + ") is not allowed; free memory or "
                 "raise HeapOptions::max_bytes");
  Memzone mz;
  try {
    mz = rt_->memzones().reserve(region_memzone(name_of(h_), k), len, kUnit);
  } catch (const Error& e) {
    throw refuse(std::string("the domain's memory cannot give another ") + std::to_string(len) + " bytes (" +
                 e.what() + ")");
  }
  heap::add_region(h_, heap::addr_of(mz.addr), len);
  local_->mapped_regions.store(k + 1, std::memory_order_relaxed);
  MPOD_LOG(heap, info, "%s grew by %llu bytes (region %u)", what_heap(h_).c_str(), static_cast<unsigned long long>(len), k);
}

// ---- allocation ----

void* Heap::allocate(size_t size, size_t align, bool zero) {
  if (align == 0) align = kUnit;
  if (align & (align - 1))
    throw Error(Errc::invalid_argument, what_heap(h_) + ": alignment " + std::to_string(align) + " is not a power of two");
  if (size > kMaxAlloc)
    throw Error(Errc::invalid_argument, what_heap(h_) + ": " + std::to_string(size) + " bytes is over the " +
                                            std::to_string(kMaxAlloc) + "-byte limit of one allocation");
  // Bounded like the size, so that size + align and the aligned address cannot wrap.
  if (align > kMaxAlloc)
    throw Error(Errc::invalid_argument, what_heap(h_) + ": alignment " + std::to_string(align) + " is over the " +
                                            std::to_string(kMaxAlloc) + "-byte limit");
  if (align < kUnit) align = kUnit;
  const uint64_t need = heap::block_size_for(size);
  Block* b;
  {
    ProcessLockGuard guard(local_->lock);
    if (guard.owner_died()) heap::repair(h_);
    map_new_regions();
    Block* free_block = heap::take_fit(h_, need, align);
    if (!free_block) {
      grow(need + align, size);
      free_block = heap::take_fit(h_, need, align);
      if (!free_block) throw Error(Errc::no_memory, what_heap(h_) + ": a new region did not fit the request; report this");
    }
    const uint64_t data = (heap::addr_of(free_block) + kUnit + align - 1) & ~uint64_t(align - 1);
    b = heap::carve(h_, free_block, data, need);
    heap::set_user_size(b, size);
    b->align = align;
  }
  if (zero) std::memset(b->data(), 0, size);
  return b->data();
}

void* Heap::alloc(size_t size, size_t align) { return allocate(size, align, false); }
void* Heap::zalloc(size_t size, size_t align) { return allocate(size, align, true); }

void* Heap::try_alloc(size_t size, size_t align) noexcept {
  try {
    return allocate(size, align, false);
  } catch (const Error& e) {
    MPOD_LOG(heap, info, "%s", e.what());
    return nullptr;
  } catch (...) {
    return nullptr;
  }
}

void Heap::free(void* ptr) {
  if (!ptr) return;
  ProcessLockGuard guard(local_->lock);
  if (guard.owner_died()) heap::repair(h_);
  map_new_regions();
  Block* b = busy_block_of(h_, ptr, "free");
  check_guard(h_, b, "free");
  heap::release(h_, b);
}

void* Heap::realloc(void* ptr, size_t size) {
  if (!ptr) return alloc(size);
  if (size > kMaxAlloc)
    throw Error(Errc::invalid_argument, what_heap(h_) + ": " + std::to_string(size) + " bytes is over the " +
                                            std::to_string(kMaxAlloc) + "-byte limit of one allocation");
  uint64_t old_size, align;
  {
    ProcessLockGuard guard(local_->lock);
    if (guard.owner_died()) heap::repair(h_);
    map_new_regions();
    Block* b = busy_block_of(h_, ptr, "reallocate");
    check_guard(h_, b, "reallocate");
    if (heap::resize_in_place(h_, b, heap::block_size_for(size))) {
      heap::set_user_size(b, size);
      return ptr;
    }
    old_size = b->user_size;
    align = b->align;
  }
  void* fresh = alloc(size, align);
  std::memcpy(fresh, ptr, std::min<uint64_t>(old_size, size));
  free(ptr);
  return fresh;
}

size_t Heap::size_of(const void* ptr) const {
  ProcessLockGuard guard(local_->lock);
  if (guard.owner_died()) heap::repair(h_);
  map_new_regions();
  return busy_block_of(h_, ptr, "size")->user_size;
}

bool Heap::contains(const void* ptr) const noexcept { return heap::region_of(h_, heap::addr_of(ptr)) >= 0; }

HeapStats Heap::stats() const {
  ProcessLockGuard guard(local_->lock);
  if (guard.owner_died()) heap::repair(h_);
  HeapStats s;
  s.heap_bytes = h_->heap_bytes;
  s.free_bytes = h_->free_bytes;
  s.allocated_bytes = h_->allocated_bytes;
  s.greatest_free = heap::greatest_free(h_);
  s.free_blocks = h_->free_blocks;
  s.allocated_blocks = h_->allocated_blocks;
  s.regions = h_->n_regions.load(std::memory_order_relaxed);
  s.repairs = h_->repairs;
  return s;
}

void Heap::check() const {
  ProcessLockGuard guard(local_->lock);
  if (guard.owner_died()) heap::repair(h_);
  map_new_regions();
  heap::check(h_);
}

std::string Heap::name() const { return std::string(name_of(h_)); }

}  // namespace mpod
