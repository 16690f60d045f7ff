/* dpdk-mempool-bench OBJECTS [EAL options, with -l 0-1]
 *
 * DPDK 22.11's rte_mempool, measured the way mpod-bench-mempool measures
 * mpod's Mempool (same pools, rows and loop: mempool_bench_shared.h). The
 * threads are EAL lcores, so they have lcore caches: one-thread rows run on
 * the main lcore (CPU 0), two-thread rows on it and the next lcore (CPU 1),
 * started with rte_eal_remote_launch. Each thread gets and puts OBJECTS
 * objects per row. Prints one line per row, "row name=... ns_per_obj=...",
 * which mpod-bench-mempool parses. Written in C against DPDK's public API only.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#include "mempool_bench_shared.h"

struct worker {
  struct rte_mempool* mp;
  unsigned bulk, threads;
  uint64_t objects;
  uint32_t* arrived;
  uint64_t elapsed_ns; /* out */
  int failed;          /* out */
};

static void die(const char* what) {
  fprintf(stderr, "dpdk-mempool-bench: %s (rte_errno %d: %s)\n", what, rte_errno, rte_strerror(rte_errno));
  exit(1);
}

/* One call of DPDK's API for n objects: the single-object call for n == 1,
 * bulk otherwise; exactly what mpod's side calls. Both return 1 on success. */
static inline int get_n(struct rte_mempool* mp, void** objs, unsigned n) {
  if (n == 1) return rte_mempool_get(mp, objs) == 0;
  return rte_mempool_get_bulk(mp, objs, n) == 0;
}
static inline void put_n(struct rte_mempool* mp, void* const* objs, unsigned n) {
  if (n == 1) rte_mempool_put(mp, objs[0]);
  else rte_mempool_put_bulk(mp, objs, n);
}

/* KEEP objects taken in calls of `bulk`, then given back the same way. */
static inline int iterate(struct rte_mempool* mp, void** held, unsigned bulk, uint64_t iterations) {
  for (uint64_t k = 0; k < iterations; ++k) {
    for (unsigned i = 0; i < MEMPOOL_BENCH_KEEP; i += bulk)
      if (!get_n(mp, held + i, bulk)) return 0;
    for (unsigned i = 0; i < MEMPOOL_BENCH_KEEP; i += bulk) put_n(mp, held + i, bulk);
  }
  return 1;
}

static int run_worker(void* arg) {
  struct worker* w = arg;
  void* held[MEMPOOL_BENCH_KEEP];
  if (!iterate(w->mp, held, w->bulk, mempool_bench_warmup(w->objects))) w->failed = 1;
  mempool_bench_barrier(w->arrived, w->threads);
  const uint64_t iterations = mempool_bench_iterations(w->objects);
  const uint64_t t0 = mempool_bench_now_ns();
  if (!iterate(w->mp, held, w->bulk, iterations)) w->failed = 1;
  w->elapsed_ns = mempool_bench_now_ns() - t0;
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: dpdk-mempool-bench OBJECTS ROW|all [EAL options]\n"
                    "  ROW: index into mempool_bench_cases (mempool_bench_shared.h), or all\n");
    return 2;
  }
  const uint64_t objects = strtoull(argv[1], NULL, 10);
  const int only = strcmp(argv[2], "all") == 0 ? -1 : atoi(argv[2]);
  if (only >= MEMPOOL_BENCH_CASES) {
    fprintf(stderr, "dpdk-mempool-bench: row %d does not exist (0..%d)\n", only, MEMPOOL_BENCH_CASES - 1);
    return 2;
  }
  argv[2] = argv[0]; /* EAL sees: prog, EAL options */
  if (rte_eal_init(argc - 2, argv + 2) < 0) die("rte_eal_init failed");
  const unsigned second = rte_get_next_lcore(rte_lcore_id(), 1, 0);
  if (second >= RTE_MAX_LCORE) die("two-thread rows need two lcores (-l 0-1)");

  struct rte_mempool* cached = rte_mempool_create("mpod_bench_c256", MEMPOOL_BENCH_OBJECTS, MEMPOOL_BENCH_ELT_SIZE,
                                                  MEMPOOL_BENCH_CACHE, 0, NULL, NULL, NULL, NULL, SOCKET_ID_ANY, 0);
  struct rte_mempool* uncached = rte_mempool_create("mpod_bench_c0", MEMPOOL_BENCH_OBJECTS, MEMPOOL_BENCH_ELT_SIZE, 0,
                                                    0, NULL, NULL, NULL, NULL, SOCKET_ID_ANY, 0);
  if (!cached || !uncached) die("rte_mempool_create failed");

  for (int i = 0; i < MEMPOOL_BENCH_CASES; ++i) {
    if (only >= 0 && i != only) continue;
    const struct mempool_bench_case c = mempool_bench_cases[i];
    uint32_t arrived = 0;
    struct worker w[MEMPOOL_BENCH_MAX_THREADS];
    for (unsigned t = 0; t < c.threads; ++t)
      w[t] = (struct worker){c.cache ? cached : uncached, c.bulk, c.threads, objects, &arrived, 0, 0};
    if (c.threads == 2 && rte_eal_remote_launch(run_worker, &w[1], second) != 0) die("rte_eal_remote_launch failed");
    run_worker(&w[0]);
    if (c.threads == 2 && rte_eal_wait_lcore(second) < 0) die("the worker lcore failed");
    uint64_t ns = 0;
    for (unsigned t = 0; t < c.threads; ++t) {
      if (w[t].failed) die("a get failed on a pool with objects to spare");
      ns += w[t].elapsed_ns;
    }
    char name[64];
    mempool_bench_row_name(name, sizeof name, c);
    mempool_bench_print_row(name, mempool_bench_iterations(objects) * MEMPOOL_BENCH_KEEP * c.threads, ns);
  }
  if (rte_mempool_avail_count(cached) != MEMPOOL_BENCH_OBJECTS)
    fprintf(stderr, "dpdk-mempool-bench: note: %u of %u objects free at the end\n", rte_mempool_avail_count(cached),
            MEMPOOL_BENCH_OBJECTS);
  rte_mempool_free(cached);
  rte_mempool_free(uncached);
  rte_eal_cleanup();
  return 0;
}
