// mpod::Mempool — named pools of fixed-size objects in shared memory (DPDK's rte_mempool).
//
// A pool is created by name with all of its objects at once, in one memzone
// ("MP_<name>"); any process of the domain, in any pod, looks it up and gets
// and puts objects. Object addresses are the same in every process, so they
// travel through rings as plain pointers.
//
// Free objects live in a multi-producer/multi-consumer mpod::Ring (its name is
// "MP_<name>", so `mpod info` shows it among the rings too) and in per-thread
// caches. The caches are slots in the pool's shared memory, not thread-local
// heap memory, so every process can count what they hold; a thread claims a
// slot on its first get or put, flushes and releases it when it exits, and
// the caches of a process that died are given back to the pool by the next
// process that looks the pool up (or calls reclaim_dead_caches()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "mpod/detail/mempool_cache.hpp"
#include "mpod/detail/pointer_copy.hpp"
#include "mpod/process.hpp"
#include "mpod/ring.hpp"

namespace mpod {

class Runtime;

struct MempoolOptions {
  // Objects each thread may keep for itself (0: no caches), at most
  // Mempool::kMaxCacheSize. Like DPDK, a cache holds up to 1.5x this before
  // it gives the excess back to the common pool.
  uint32_t cache_size = 0;
  // Called once for every object, at creation, in the creating process:
  // (object, its index 0..n-1). Objects are zeroed before.
  std::function<void(void* obj, uint32_t index)> constructor;
  // Pads each object to an odd number of 64-byte lines, as DPDK does unless
  // MEMPOOL_F_NO_SPREAD is given. With a power-of-two stride (2048-byte
  // packet buffers) the first line of every object falls in the same few
  // cache sets, and a core touching many packet headers evicts its own.
  // Costs one line per object whose size is an even number of lines.
  bool spread = true;
};

class Mempool {
 public:
  static constexpr size_t kMaxNameLen = 25;  // "MP_" + name names its ring
  static constexpr uint32_t kMaxCacheSize = 512;
  static constexpr uint32_t kMaxCaches = 64;  // threads with a cache, over all processes
  static constexpr uint32_t kMaxBulk = 512;   // objects per get_bulk/put_bulk call

  // Creates pool `name` of `n` objects (1..2^30) of `elt_size` bytes (1..1 MiB),
  // each aligned to 64 bytes. Throws invalid_argument (name, sizes, cache
  // size), already_exists, no_memory (naming the size asked for).
  static Mempool create(Runtime& rt, std::string_view name, uint32_t n, uint32_t elt_size,
                        MempoolOptions options = {});
  // The pool `name`, created by any process; gives back the caches of dead
  // processes. Throws not_found naming it.
  static Mempool lookup(Runtime& rt, std::string_view name);
  // Frees the pool and its ring. Every process must stop using it first.
  static void destroy(Runtime& rt, std::string_view name);
  // Every pool of the domain (for mpod info).
  static std::vector<Mempool> list(Runtime& rt);

  Mempool() = default;
  bool valid() const noexcept { return h_ != nullptr; }

  // Takes `n` objects (1..kMaxBulk), all or none: returns false, taking
  // nothing, when fewer are free. Uses this thread's cache when the pool has
  // caches. Any thread, any process. Inline: a hit in this thread's cache
  // is a few loads and stores, as in DPDK; the rest is get_bulk_slow.
  [[gnu::always_inline]] bool get_bulk(void** objs, unsigned n) noexcept {
    if (cache_size_ == 0) return n - 1 < kMaxBulk && ring_.dequeue_bulk(objs, n, Sync::multi) == n;
#ifdef NDEBUG
    if (Cache* c = last_cache(n)) {
      const uint32_t len = c->len.load(std::memory_order_relaxed);
      // n <= len <= cache_cap_ in one unsigned compare (n < cache_cap_ here):
      // the length is the group's to write, so it is kept within the cache's slots.
      if (len - n <= cache_cap_ - n) [[likely]] {  // hand out the most recently used objects, warm in cache
        detail::copy_pointers_reversed(c->objs + len, objs, n);
        c->len.store(len - n, std::memory_order_relaxed);
        return true;
      }
    }
#endif
    return get_bulk_slow(objs, n);
  }
  [[gnu::always_inline]] bool get(void** obj) noexcept { return get_bulk(obj, 1); }
  // Gives back `n` objects (1..kMaxBulk) taken from this pool. A pointer that
  // is not one of its objects is refused, with an error logged, and the
  // others are still put back; returns how many were put back. Every
  // pointer is checked against the pool's range and 64-byte alignment; the
  // exact object stride only in debug builds (it costs a division).
  [[gnu::always_inline]] unsigned put_bulk(void* const* objs, unsigned n) noexcept {
#ifdef NDEBUG
    if (cache_size_ == 0 && n - 1 < kMaxBulk && detail::pointers_in_range(objs, n, objs_base_, last_offset_) &&
        ring_.enqueue_bulk(objs, n, Sync::multi) == n) [[likely]]  // the ring has a slot for every object
      return n;
    if (Cache* c = last_cache(n)) {
      const uint32_t len = c->len.load(std::memory_order_relaxed);
      if (len + n <= flush_at_) [[likely]] {
        // Copied and checked in one pass; the copies only count (len
        // moves) if every pointer passed.
        if (detail::copy_pointers_checked(c->objs + len, objs, n, objs_base_, last_offset_)) [[likely]] {
          c->len.store(len + n, std::memory_order_relaxed);
          return n;
        }
      }
    }
#endif
    return put_bulk_slow(objs, n);
  }
  [[gnu::always_inline]] bool put(void* obj) noexcept { return put_bulk(&obj, 1) == 1; }

  // Free objects, in the common pool and in every cache; a snapshot that is
  // exact when no call is in flight.
  uint32_t available() const noexcept;
  uint32_t in_use() const noexcept { return size() - available(); }
  // Objects lost in the pool's ring to processes that died inside a put
  // (Ring::lost_to_dead): part of in_use() for good. A get that dies inside
  // the ring leaves its objects there; objects a dead process held outside
  // its cache are lost without being counted.
  uint64_t lost_to_dead() const noexcept { return ring_.lost_to_dead(); }
  uint32_t size() const noexcept;
  uint32_t elt_size() const noexcept;     // as asked at creation
  uint32_t cache_size() const noexcept;
  std::string name() const;

  // True if `obj` is the address of one of this pool's objects.
  bool contains(const void* obj) const noexcept;
  // Calls fn(object, index) for every object, free or not, in index order.
  void for_each(const std::function<void(void* obj, uint32_t index)>& fn) const;
  // Flushes this thread's cache of this pool back to the common pool.
  void flush_thread_cache() noexcept;
  // Gives back the cache contents of processes that died; returns how many
  // objects were recovered. Objects a dead process held outside its cache
  // are lost to the pool, as in DPDK.
  uint32_t reclaim_dead_caches();

  struct Header;  // in shared memory; see src/objects/mempool.cpp
  using Cache = detail::MempoolCache;  // one thread's cache, in the pool's shared memory

 private:
  Mempool(Header* h, Ring ring, std::string domain_dir, ProcessId self) noexcept;
  // This thread's cache of this pool if it is the one used last and can
  // serve n objects; else nullptr (the slow path finds or claims one).
  Cache* last_cache(unsigned n) const noexcept {
    const auto& last = detail::t_mempool_last;
    if (last.pool == h_ && last.instance == instance_ && n - 1 < cache_size_ &&
        last.epoch == detail::mempool_epoch.load(std::memory_order_relaxed)) [[likely]]
      return last.cache;
    return nullptr;
  }
  bool get_bulk_slow(void** objs, unsigned n) noexcept;
  unsigned put_bulk_slow(void* const* objs, unsigned n) noexcept;
  Cache* thread_cache() noexcept;
  Cache* thread_cache_slow(uint64_t epoch) noexcept;
  friend void release_process_caches(Runtime& rt) noexcept;  // src/objects/mempool_caches.hpp
  // Copies of the pool's fixed settings, checked against its memory when
  // it was created or looked up: the header is the group's to write, so no
  // call takes a size, an offset or a count from it again.
  Cache* cache_at(uint32_t i) const noexcept {
    return reinterpret_cast<Cache*>(caches_base_ + uint64_t(i) * cache_bytes_);
  }
  uint64_t instance_ = 0;
  uintptr_t objs_base_ = 0;
  uint64_t last_offset_ = 0;  // n * stride - 1: the highest offset inside the objects
  uint32_t cache_size_ = 0;
  uint32_t flush_at_ = 0;
  uint32_t cache_cap_ = 0;    // slots per cache
  uint32_t n_ = 0, stride_ = 0;
  uintptr_t caches_base_ = 0;
  uint64_t cache_bytes_ = 0;
  Header* h_ = nullptr;
  Ring ring_;               // the common pool of free objects
  std::string domain_dir_;  // for liveness tests of cache owners
  ProcessId self_;          // owner recorded on the caches this process's threads claim
};

}  // namespace mpod
