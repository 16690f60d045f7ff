// The mpod side's counterpart of dpdk_ring_bench.c's calls and trial loops:
// shared by mpod-bench-ring (the primary and producer) and mpod-ring-consumer.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "mpod/ring.hpp"
#include "ring_bench_shared.h"

namespace ring_bench {

// The trial rows' ring, by its name in the mpod domain of a run.
inline constexpr const char* kPairRing = "bench_pair";

// What producers enqueue: distinct non-null pointers, never dereferenced.
struct Objs {
  void* p[RING_BENCH_MAX_BURST];
  Objs() {
    for (unsigned i = 0; i < RING_BENCH_MAX_BURST; ++i) p[i] = reinterpret_cast<void*>(uintptr_t(i) + 1);
  }
};
inline const Objs g_objs;

constexpr mpod::Sync sync_of(int multi) { return multi ? mpod::Sync::multi : mpod::Sync::single; }

// One call of the library's API for n elements: the single-object call for
// n == 1, bulk otherwise; exactly what DPDK's side calls.
template <int kMulti, unsigned kN>
[[gnu::always_inline]] inline unsigned enqueue(mpod::Ring& r, void* const* objs) {
  if constexpr (kN == 1) return r.enqueue(objs[0], sync_of(kMulti)) ? 1 : 0;
  else return r.enqueue_bulk(objs, kN, sync_of(kMulti));
}

template <int kMulti, unsigned kN>
[[gnu::always_inline]] inline unsigned dequeue(mpod::Ring& r, void** out) {
  if constexpr (kN == 1) return r.dequeue(out, sync_of(kMulti)) ? 1 : 0;
  else return r.dequeue_bulk(out, kN, sync_of(kMulti));
}

// The trial loops, one instance per case with its mode and burst as
// constants (as an application compiles its calls; DPDK's side is
// specialised the same way). The handle by value, as DPDK's side keeps its
// rte_ring pointer in a local: through a reference, the ring's address is
// reloaded after every atomic.

// One thread: enqueue a burst, dequeue it; the nanoseconds it took, 0 if a
// call failed.
template <int kMulti, unsigned kBurst>
uint64_t local_loop(void* ring, uint64_t elements) {
  mpod::Ring r = *static_cast<mpod::Ring*>(ring);
  void* out[RING_BENCH_MAX_BURST];
  const uint64_t iters = elements / kBurst;
  uint64_t moved = 0;
  const uint64_t t0 = ring_bench_now_ns();
  for (uint64_t k = 0; k < iters; ++k) {
    moved += enqueue<kMulti, kBurst>(r, g_objs.p);
    moved += dequeue<kMulti, kBurst>(r, out);
    ring_bench_keep(out);
  }
  const uint64_t elapsed = ring_bench_now_ns() - t0;
  if (moved != 2 * iters * kBurst) {
    std::fprintf(stderr, "mpod ring bench: an enqueue or dequeue failed on a ring that had room\n");
    return 0;
  }
  return elapsed;
}

// One side of a two-process trial, counting the calls that moved nothing; 0
// if the run was aborted.
template <int kMulti, unsigned kBurst>
int produce_loop(void* ring, uint64_t elements, const ring_bench_trials* p, uint64_t* failed_calls) {
  mpod::Ring r = *static_cast<mpod::Ring*>(ring);
  uint64_t failed = 0;
  for (uint64_t sent = 0; sent < elements; sent += kBurst)
    while (enqueue<kMulti, kBurst>(r, g_objs.p) == 0) {
      if (ring_bench_aborted(p)) return 0;
      ++failed;
      ring_bench_relax();
    }
  *failed_calls = failed;
  return 1;
}

template <int kMulti, unsigned kBurst>
int consume_loop(void* ring, uint64_t elements, const ring_bench_trials* p, uint64_t* failed_calls) {
  mpod::Ring r = *static_cast<mpod::Ring*>(ring);
  void* out[RING_BENCH_MAX_BURST];
  uint64_t failed = 0;
  for (uint64_t got = 0; got < elements; got += kBurst) {
    while (dequeue<kMulti, kBurst>(r, out) == 0) {
      if (ring_bench_aborted(p)) return 0;
      ++failed;
      ring_bench_relax();
    }
    ring_bench_keep(out);
  }
  *failed_calls = failed;
  return 1;
}

// Every case's instances, found by the case's mode and burst.
struct CaseLoops {
  int multi;
  unsigned burst;
  uint64_t (*local)(void*, uint64_t);
  int (*produce)(void*, uint64_t, const ring_bench_trials*, uint64_t*);
  int (*consume)(void*, uint64_t, const ring_bench_trials*, uint64_t*);
};
template <int kMulti, unsigned kBurst>
constexpr CaseLoops case_loops() {
  return {kMulti, kBurst, local_loop<kMulti, kBurst>, produce_loop<kMulti, kBurst>, consume_loop<kMulti, kBurst>};
}
inline constexpr CaseLoops kCaseLoops[] = {case_loops<0, 1>(), case_loops<0, 8>(), case_loops<0, 32>(),
                                           case_loops<1, 1>(), case_loops<1, 8>(), case_loops<1, 32>()};
static_assert(sizeof kCaseLoops / sizeof kCaseLoops[0] == RING_BENCH_CASES, "one instance per case of ring_bench_cases");

inline const CaseLoops& loops_for(ring_bench_case c) {
  for (const CaseLoops& l : kCaseLoops)
    if (l.multi == c.multi && l.burst == c.burst) return l;
  std::fprintf(stderr, "mpod ring bench: no loops for case multi=%d burst=%u: add them to kCaseLoops\n", c.multi, c.burst);
  std::abort();
}

// The callbacks ring_bench_run_producer/consumer take.
inline uint64_t local_trial(void* ring, ring_bench_case c, uint64_t elements) { return loops_for(c).local(ring, elements); }
inline int produce_trial(void* ring, ring_bench_case c, uint64_t elements, const ring_bench_trials* p, uint64_t* failed) {
  return loops_for(c).produce(ring, elements, p, failed);
}
inline int consume_trial(void* ring, ring_bench_case c, uint64_t elements, const ring_bench_trials* p, uint64_t* failed) {
  return loops_for(c).consume(ring, elements, p, failed);
}

}  // namespace ring_bench
