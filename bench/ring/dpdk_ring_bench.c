/* dpdk-ring-bench mpmc ELEMENTS [EAL options]
 * dpdk-ring-bench producer|consumer TRIALS_FILE [EAL options]
 *
 * DPDK 22.11's rte_ring, measured the way mpod-bench-ring measures mpod's
 * Ring (same loops, same ring geometry, same hand-shake: ring_bench_shared.h).
 * Prints one line per row, "row name=... ns_per_elem=...", which
 * mpod-bench-ring parses:
 *   producer  primary, CPU 0: creates the ring, prints READY, runs DPDK's
 *             one-thread trials (enqueue a burst, dequeue it: ring_perf_autotest)
 *             and feeds the consumer in the two-process ones
 *   consumer  secondary, CPU 1: finds the ring with rte_ring_lookup, prints
 *             READY, times each of DPDK's two-process trials
 *   Both take their turns and store their times in TRIALS_FILE, interleaved
 *   with mpod's trials (ring_bench_shared.h).
 *   mpmc      4 producer and 4 consumer threads on CPUs 0-1, burst calls
 * Written in C against DPDK's public API only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_memzone.h>
#include <rte_ring.h>

#include "ring_bench_shared.h"

#define RING_NAME "mpod_bench_ring"

/* What producers enqueue: distinct non-null pointers (never dereferenced). */
static void* objs[RING_BENCH_MAX_BURST];

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* One call of each library's API for `n` elements: the single-object call for
 * n == 1 (what an application moving one packet uses), bulk otherwise. */
ALWAYS_INLINE unsigned enqueue(struct rte_ring* r, int multi, unsigned n) {
  if (n == 1) return (multi ? rte_ring_mp_enqueue(r, objs[0]) : rte_ring_sp_enqueue(r, objs[0])) == 0;
  return multi ? rte_ring_mp_enqueue_bulk(r, objs, n, NULL) : rte_ring_sp_enqueue_bulk(r, objs, n, NULL);
}

ALWAYS_INLINE unsigned dequeue(struct rte_ring* r, int multi, void** out, unsigned n) {
  if (n == 1) return (multi ? rte_ring_mc_dequeue(r, out) : rte_ring_sc_dequeue(r, out)) == 0;
  return multi ? rte_ring_mc_dequeue_bulk(r, out, n, NULL) : rte_ring_sc_dequeue_bulk(r, out, n, NULL);
}

static void die(const char* what) {
  fprintf(stderr, "dpdk-ring-bench: %s (rte_errno %d: %s)\n", what, rte_errno, rte_strerror(rte_errno));
  exit(1);
}

/* ---- one-thread and two-process trials, interleaved with mpod's ----
 * (ring_bench_shared.h): the producer process runs the one-thread trials
 * alone and feeds the consumer process in the two-process ones; each waits
 * its turn asleep, so only one library runs at a time. */

/* The trial loops, inlined into one instance per case with its mode and
 * burst as constants (as an application compiles its calls; mpod's side,
 * mpod_ring_ops.hpp, is specialised the same way). */

/* One thread on CPU 0: enqueue a burst, dequeue it (ring_perf_autotest). */
ALWAYS_INLINE uint64_t local_loop(struct rte_ring* r, int multi, unsigned burst, uint64_t elements) {
  void* out[RING_BENCH_MAX_BURST];
  const uint64_t iters = elements / burst;
  uint64_t moved = 0;
  const uint64_t t0 = ring_bench_now_ns();
  for (uint64_t k = 0; k < iters; ++k) {
    moved += enqueue(r, multi, burst);
    moved += dequeue(r, multi, out, burst);
    ring_bench_keep(out);
  }
  const uint64_t elapsed = ring_bench_now_ns() - t0;
  if (moved != 2 * iters * burst) {
    fprintf(stderr, "dpdk-ring-bench: an enqueue or dequeue failed on a ring that had room\n");
    return 0;
  }
  return elapsed;
}

ALWAYS_INLINE int produce_loop(struct rte_ring* r, int multi, unsigned burst, uint64_t elements,
                               const struct ring_bench_trials* p, uint64_t* failed_calls) {
  uint64_t failed = 0;
  for (uint64_t sent = 0; sent < elements; sent += burst)
    while (enqueue(r, multi, burst) == 0) {
      if (ring_bench_aborted(p)) return 0;
      ++failed;
      ring_bench_relax();
    }
  *failed_calls = failed;
  return 1;
}

ALWAYS_INLINE int consume_loop(struct rte_ring* r, int multi, unsigned burst, uint64_t elements,
                               const struct ring_bench_trials* p, uint64_t* failed_calls) {
  void* out[RING_BENCH_MAX_BURST];
  uint64_t failed = 0;
  for (uint64_t got = 0; got < elements; got += burst) {
    while (dequeue(r, multi, out, burst) == 0) {
      if (ring_bench_aborted(p)) return 0;
      ++failed;
      ring_bench_relax();
    }
    ring_bench_keep(out);
  }
  *failed_calls = failed;
  return 1;
}

struct case_loops {
  int multi;
  unsigned burst;
  uint64_t (*local)(struct rte_ring*, uint64_t);
  int (*produce)(struct rte_ring*, uint64_t, const struct ring_bench_trials*, uint64_t*);
  int (*consume)(struct rte_ring*, uint64_t, const struct ring_bench_trials*, uint64_t*);
};

#define CASE_LOOPS(NAME, MULTI, BURST)                                                                             \
  static uint64_t local_##NAME(struct rte_ring* r, uint64_t e) { return local_loop(r, MULTI, BURST, e); }       \
  static int produce_##NAME(struct rte_ring* r, uint64_t e, const struct ring_bench_trials* p, uint64_t* f) {    \
    return produce_loop(r, MULTI, BURST, e, p, f);                                                               \
  }                                                                                                              \
  static int consume_##NAME(struct rte_ring* r, uint64_t e, const struct ring_bench_trials* p, uint64_t* f) {    \
    return consume_loop(r, MULTI, BURST, e, p, f);                                                               \
  }
CASE_LOOPS(spsc_1, 0, 1)
CASE_LOOPS(spsc_8, 0, 8)
CASE_LOOPS(spsc_32, 0, 32)
CASE_LOOPS(mpmc_1, 1, 1)
CASE_LOOPS(mpmc_8, 1, 8)
CASE_LOOPS(mpmc_32, 1, 32)
#define CASE_ENTRY(NAME, MULTI, BURST) {MULTI, BURST, local_##NAME, produce_##NAME, consume_##NAME}
static const struct case_loops all_case_loops[] = {
    CASE_ENTRY(spsc_1, 0, 1), CASE_ENTRY(spsc_8, 0, 8), CASE_ENTRY(spsc_32, 0, 32),
    CASE_ENTRY(mpmc_1, 1, 1), CASE_ENTRY(mpmc_8, 1, 8), CASE_ENTRY(mpmc_32, 1, 32)};
_Static_assert(sizeof all_case_loops / sizeof all_case_loops[0] == RING_BENCH_CASES, "one instance per case");

static const struct case_loops* loops_for(struct ring_bench_case c) {
  for (unsigned i = 0; i < RING_BENCH_CASES; ++i)
    if (all_case_loops[i].multi == c.multi && all_case_loops[i].burst == c.burst) return &all_case_loops[i];
  fprintf(stderr, "dpdk-ring-bench: no loops for case multi=%d burst=%u: add them to all_case_loops\n", c.multi, c.burst);
  abort();
}

/* The callbacks ring_bench_run_producer/consumer take. */
static uint64_t local(void* ring, struct ring_bench_case c, uint64_t elements) { return loops_for(c)->local(ring, elements); }
static int produce(void* ring, struct ring_bench_case c, uint64_t elements, const struct ring_bench_trials* p,
                   uint64_t* failed_calls) {
  return loops_for(c)->produce(ring, elements, p, failed_calls);
}
static int consume(void* ring, struct ring_bench_case c, uint64_t elements, const struct ring_bench_trials* p,
                   uint64_t* failed_calls) {
  return loops_for(c)->consume(ring, elements, p, failed_calls);
}

static void run_producer(const char* trials_file) {
  struct ring_bench_trials* p = ring_bench_map_trials(trials_file);
  if (!p) exit(1);
  struct rte_ring* r = rte_ring_create(RING_NAME, RING_BENCH_SLOTS, SOCKET_ID_ANY, 0);
  if (!r) die("rte_ring_create failed");
  ring_bench_pin_thread(RING_BENCH_PRODUCER_CPU, RING_BENCH_PRODUCER_CPU);
  printf("READY\n");
  fflush(stdout);
  if (!ring_bench_run_producer(p, RING_BENCH_SIDE_DPDK, r, produce, local)) die("the run was aborted");
  /* No rte_ring_free: freeing asks the (exiting) secondary to sync its
   * memory map and logs a failure; exiting releases it all. */
}

static void run_consumer(const char* trials_file) {
  struct ring_bench_trials* p = ring_bench_map_trials(trials_file);
  if (!p) exit(1);
  struct rte_ring* r = rte_ring_lookup(RING_NAME);
  if (!r) die("the primary's ring was not found");
  ring_bench_pin_thread(RING_BENCH_CONSUMER_CPU, RING_BENCH_CONSUMER_CPU);
  printf("READY\n");
  fflush(stdout);
  if (!ring_bench_run_consumer(p, RING_BENCH_SIDE_DPDK, r, consume)) die("the run was aborted");
}

/* ---- mpmc: 4 producers and 4 consumers in this process ---- */

/* A producer's and a consumer's loop, calling ENQ and DEQ (DPDK's burst
 * calls): mpmc_produce/mpmc_consume force MP/MC (rte_ring_mp_enqueue_burst,
 * rte_ring_mc_dequeue_burst); the _by_mode pair follows the ring's own sync
 * mode (rte_ring_enqueue_burst, rte_ring_dequeue_burst), for the RTS and HTS
 * rings DPDK offers for overcommitted cores. */
#define MPMC_LOOPS(SUFFIX, ENQ, DEQ)                                                         \
  static uint64_t mpmc_produce##SUFFIX(struct ring_bench_worker* w) {                       \
    struct rte_ring* r = w->ring;                                                            \
    uint64_t sent = 0;                                                                       \
    while (sent < w->share && !ring_bench_mpmc_stopped(w)) {                                 \
      const uint64_t left = w->share - sent;                                                 \
      const unsigned k = ENQ(r, objs, left < w->burst ? (unsigned)left : w->burst, NULL);    \
      if (k == 0) ring_bench_relax();                                                        \
      sent += k;                                                                             \
    }                                                                                        \
    return sent;                                                                             \
  }                                                                                          \
  static uint64_t mpmc_consume##SUFFIX(struct ring_bench_worker* w) {                       \
    struct rte_ring* r = w->ring;                                                            \
    void* out[RING_BENCH_MAX_BURST];                                                         \
    uint64_t got = 0;                                                                        \
    for (;;) {                                                                               \
      const int last = ring_bench_mpmc_producers_finished(w);                                \
      const unsigned k = DEQ(r, out, w->burst, NULL);                                        \
      ring_bench_keep(out);                                                                  \
      got += k;                                                                              \
      if (k > 0) continue;                                                                   \
      if (last) return got;                                                                  \
      ring_bench_relax();                                                                    \
    }                                                                                        \
  }

MPMC_LOOPS(, rte_ring_mp_enqueue_burst, rte_ring_mc_dequeue_burst)
MPMC_LOOPS(_by_mode, rte_ring_enqueue_burst, rte_ring_dequeue_burst)

/* sync: "mt" (rte_ring_create's default, MP/MC calls), "rts" or "hts". */
static void run_mpmc(uint64_t elements, const char* sync) {
  const int mt = strcmp(sync, "mt") == 0;
  const unsigned flags = mt ? 0
                         : strcmp(sync, "rts") == 0 ? RING_F_MP_RTS_ENQ | RING_F_MC_RTS_DEQ
                                                    : RING_F_MP_HTS_ENQ | RING_F_MC_HTS_DEQ;
  struct rte_ring* r = rte_ring_create(RING_NAME, RING_BENCH_SLOTS, SOCKET_ID_ANY, flags);
  if (!r) die("rte_ring_create failed");
  for (int i = 0; i < RING_BENCH_MPMC_CASES; ++i) {
    struct ring_bench_mpmc_result res;
    if (ring_bench_mpmc_run(r, ring_bench_mpmc_bursts[i], elements, mt ? mpmc_produce : mpmc_produce_by_mode,
                            mt ? mpmc_consume : mpmc_consume_by_mode, &res) != 0)
      die("the consumers did not get every element exactly once");
    char name[64];
    ring_bench_row_name(name, sizeof name, "4p4c", 1, ring_bench_mpmc_bursts[i]);
    ring_bench_print_row(name, res.moved, res.elapsed_ns, res.stopped);
  }
  rte_ring_free(r);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: dpdk-ring-bench mpmc|mpmc-rts|mpmc-hts ELEMENTS [EAL options]\n"
                    "       dpdk-ring-bench producer|consumer TRIALS_FILE [EAL options]\n");
    return 2;
  }
  const char* mode = argv[1];
  const char* arg = argv[2];
  const int pair = strcmp(mode, "producer") == 0 || strcmp(mode, "consumer") == 0;
  const uint64_t elements = pair ? 0 : strtoull(arg, NULL, 10);
  if (!pair && (elements == 0 || elements % RING_BENCH_ELEM_GRAIN != 0)) {
    fprintf(stderr, "dpdk-ring-bench: ELEMENTS must be a positive multiple of %u\n", RING_BENCH_ELEM_GRAIN);
    return 2;
  }
  argv[2] = argv[0]; /* EAL sees: program, EAL options */
  if (rte_eal_init(argc - 2, argv + 2) < 0) die("rte_eal_init failed");
  for (unsigned i = 0; i < RING_BENCH_MAX_BURST; ++i) objs[i] = (void*)(uintptr_t)(i + 1);
  if (strcmp(mode, "producer") == 0) run_producer(arg);
  else if (strcmp(mode, "consumer") == 0) run_consumer(arg);
  else if (strcmp(mode, "mpmc") == 0) run_mpmc(elements, "mt");
  else if (strcmp(mode, "mpmc-rts") == 0) run_mpmc(elements, "rts");
  else if (strcmp(mode, "mpmc-hts") == 0) run_mpmc(elements, "hts");
  else {
    fprintf(stderr, "dpdk-ring-bench: unknown mode '%s'\n", mode);
    return 2;
  }
  rte_eal_cleanup();
  return 0;
}
