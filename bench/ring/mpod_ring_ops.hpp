// The mpod side's counterpart of dpdk_ring_bench.c's enqueue()/dequeue():
// shared by mpod-bench-ring (the primary and producer) and mpod-ring-consumer.
#pragma once

#include "mpod/ring.hpp"
#include "ring_bench_shared.h"

namespace ring_bench {

// The two-process rows' ring, by its name in the mpod domain of a run.
inline constexpr const char* kPairRing = "bench_pair";

inline mpod::Sync sync_of(int multi) { return multi ? mpod::Sync::multi : mpod::Sync::single; }

// One call of the library's API for n elements: the single-object call for
// n == 1, bulk otherwise; exactly what DPDK's side calls. Always inline, like
// DPDK's header-only calls in its side's shim: a call here would be a cost
// the application calling Ring directly does not pay.
[[gnu::always_inline]] inline unsigned enqueue(mpod::Ring& r, int multi, void* const* objs, unsigned n) {
  if (n == 1) return r.enqueue(objs[0], sync_of(multi)) ? 1 : 0;
  return r.enqueue_bulk(objs, n, sync_of(multi));
}

[[gnu::always_inline]] inline unsigned dequeue(mpod::Ring& r, int multi, void** out, unsigned n) {
  if (n == 1) return r.dequeue(out, sync_of(multi)) ? 1 : 0;
  return r.dequeue_bulk(out, n, sync_of(multi));
}

}  // namespace ring_bench
