/* What mpod-bench-mempool and dpdk-mempool-bench agree on: the pool geometry,
 * the rows, the start barrier and the output line. Plain C (and valid C++), so
 * both sides run the same rows from one definition and the only thing that
 * differs between the two columns of the table is the mempool library.
 *
 * The loop (DPDK's mempool_perf_autotest): each thread takes KEEP objects in
 * calls of `bulk` objects, then gives them back in calls of `bulk`; the figure
 * is the time of one get plus one put per object.
 */
#ifndef MPOD_BENCH_MEMPOOL_SHARED_H
#define MPOD_BENCH_MEMPOOL_SHARED_H

/* C files define _GNU_SOURCE first: CPU_SET, sched_setaffinity. */
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* Both pools: 8191 objects of 64 bytes (2^n - 1, DPDK's optimum), MP/MC
 * common ring; the cached pool gives each thread (DPDK: each lcore) a cache
 * of 256, flushed above 1.5 x 256 on both sides. */
#define MEMPOOL_BENCH_OBJECTS 8191u
#define MEMPOOL_BENCH_ELT_SIZE 64u
#define MEMPOOL_BENCH_CACHE 256u
#define MEMPOOL_BENCH_KEEP 32u     /* objects a thread holds at its peak in one iteration */
#define MEMPOOL_BENCH_MAX_THREADS 2

struct mempool_bench_case {
  unsigned cache;   /* MEMPOOL_BENCH_CACHE or 0 */
  unsigned bulk;    /* objects per get/put call (1: the single-object calls) */
  unsigned threads; /* 1: CPU 0; 2: CPUs 0 and 1, both on the same pool */
};
#define MEMPOOL_BENCH_CASES 6
static const struct mempool_bench_case mempool_bench_cases[MEMPOOL_BENCH_CASES] = {
    {MEMPOOL_BENCH_CACHE, 1, 1}, {MEMPOOL_BENCH_CACHE, 32, 1}, {MEMPOOL_BENCH_CACHE, 1, 2},
    {MEMPOOL_BENCH_CACHE, 32, 2}, {0, 32, 1},                  {0, 32, 2}};

/* Row names: c256-b32-t2 ... */
static inline void mempool_bench_row_name(char* out, size_t len, struct mempool_bench_case c) {
  snprintf(out, len, "c%u-b%u-t%u", c.cache, c.bulk, c.threads);
}

/* The one machine-readable line per row that the driver parses: the mean cost
 * over the threads of one get + one put of one object. */
static inline void mempool_bench_print_row(const char* name, uint64_t objects, uint64_t thread_ns) {
  printf("row name=%s ns_per_obj=%.4f objects=%llu thread_ns=%llu\n", name, (double)thread_ns / (double)objects,
         (unsigned long long)objects, (unsigned long long)thread_ns);
  fflush(stdout);
}

static inline uint64_t mempool_bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Restricts the calling thread to one CPU (what EAL does for an lcore). */
static inline int mempool_bench_pin_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

static inline void mempool_bench_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

/* Every thread of a row calls this after its warm-up; all return together. */
static inline void mempool_bench_barrier(uint32_t* arrived, unsigned threads) {
  __atomic_add_fetch(arrived, 1, __ATOMIC_ACQ_REL);
  while (__atomic_load_n(arrived, __ATOMIC_ACQUIRE) < threads) mempool_bench_relax();
}

/* Iterations of the timed loop for `objects` per thread, and of the warm-up
 * before it (fills the thread's cache, faults the pages in). */
static inline uint64_t mempool_bench_iterations(uint64_t objects) {
  uint64_t it = objects / MEMPOOL_BENCH_KEEP;
  return it ? it : 1;
}
static inline uint64_t mempool_bench_warmup(uint64_t objects) {
  uint64_t it = mempool_bench_iterations(objects) / 10;
  return it < 20000 ? it : 20000;
}

#endif
