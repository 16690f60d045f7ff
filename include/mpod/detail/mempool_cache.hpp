// A mempool's per-thread cache as it sits in the pool's shared memory, and
// the thread's handle on the last one it used: what Mempool's inline get/put
// fast paths need. Include mpod/mempool.hpp, not this.
#pragma once

#include <atomic>
#include <cstdint>

namespace mpod::detail {

// One thread's cache. Only its owner touches objs and len, except a process
// that reclaims the cache of a dead owner (after taking `token`), and
// counters that read len (relaxed; a snapshot).
struct MempoolCache {
  std::atomic<uint64_t> token;  // 0: free; all ones: being reclaimed; else the owning thread's token
  uint8_t owner[16];            // process id of the owning thread's process
  std::atomic<uint32_t> len;    // objects in objs[]
  uint32_t reserved;
  void* objs[1];                // the pool's cache_cap entries
};

// The pool this thread used last and its cache there. Trivially
// constructible and destructible, so reading it is a plain TLS load with no
// wrapper call. Valid while `epoch` equals mempool_epoch (bumped when a
// Runtime shuts down and its memory goes) and the pool's instance matches.
struct MempoolLastCache {
  const void* pool;
  uint64_t instance;
  uint64_t epoch;
  MempoolCache* cache;
};
inline thread_local MempoolLastCache t_mempool_last{};
inline std::atomic<uint64_t> mempool_epoch{1};

}  // namespace mpod::detail
