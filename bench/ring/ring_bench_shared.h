/* What mpod-bench-ring, mpod-ring-consumer and dpdk-ring-bench agree on:
 * the ring geometry, the rows, the output line, and the hand-shake between a
 * producer and a consumer process. Plain C (and valid C++), so mpod's and
 * DPDK's sides run the same protocol from one definition and the only thing
 * that differs between the two columns of the table is the ring library.
 */
#ifndef MPOD_BENCH_RING_SHARED_H
#define MPOD_BENCH_RING_SHARED_H

/* C files define _GNU_SOURCE first: CPU_SET, sched_setaffinity, pthread_timedjoin_np. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Both rings have 4096 slots and hold 4095 elements: rte_ring_create(4096)
 * keeps one slot empty, mpod's Ring::create(4095) rounds its slot array up to
 * 4096. Same memory, same capacity (ring_perf_autotest also uses 4096). */
#define RING_BENCH_SLOTS 4096u
#define RING_BENCH_CAPACITY (RING_BENCH_SLOTS - 1u)

#define RING_BENCH_PRODUCER_CPU 0
#define RING_BENCH_CONSUMER_CPU 1
#define RING_BENCH_THREADS_PER_SIDE 4 /* the MP/MC throughput rows: 4 producers, 4 consumers */
#define RING_BENCH_MAX_BURST 32u
/* Element counts are rounded to a multiple of this, so every burst and every
 * one of the 4 producers' shares divides them. */
#define RING_BENCH_ELEM_GRAIN (RING_BENCH_MAX_BURST * RING_BENCH_THREADS_PER_SIDE)

/* The single-thread and two-process rows, in the order both sides run them. */
struct ring_bench_case {
  int multi; /* 0: SP/SC calls, 1: MP/MC calls */
  unsigned burst;
};
#define RING_BENCH_CASES 6
static const struct ring_bench_case ring_bench_cases[RING_BENCH_CASES] = {
    {0, 1}, {0, 8}, {0, 32}, {1, 1}, {1, 8}, {1, 32}};
/* The 4-producer/4-consumer rows (always MP/MC, burst calls). */
#define RING_BENCH_MPMC_CASES 2
static const unsigned ring_bench_mpmc_bursts[RING_BENCH_MPMC_CASES] = {32, 8};

/* Row names: local-spsc-8, pair-mpmc-32, 4p4c-mpmc-32 ... */
static inline void ring_bench_row_name(char* out, size_t len, const char* section, int multi, unsigned burst) {
  snprintf(out, len, "%s-%s-%u", section, multi ? "mpmc" : "spsc", burst);
}

/* The one machine-readable line per row that the driver parses. `stopped`:
 * the row hit its time limit before moving every element (see below). */
static inline void ring_bench_print_row(const char* name, uint64_t elements, uint64_t elapsed_ns, int stopped) {
  printf("row name=%s ns_per_elem=%.4f elements=%llu elapsed_ns=%llu stopped=%d\n", name,
         (double)elapsed_ns / (double)elements, (unsigned long long)elements, (unsigned long long)elapsed_ns, stopped);
  fflush(stdout);
}

static inline uint64_t ring_bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Restricts the calling thread to CPUs first..last. Returns 0 on success. */
static inline int ring_bench_pin_thread(int first, int last) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu = first; cpu <= last; ++cpu) CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

/* What both sides do when a ring is full or empty: what rte_pause() does. */
static inline void ring_bench_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

/* Hand-shake of the two-process rows, in shared memory (an mpod memzone, or
 * a DPDK memzone). For case c (1-based) the consumer announces ready = c, the
 * producer answers go = c and starts enqueueing, the consumer starts its clock
 * when it sees go. After the last case the consumer sets ready = CASES + 1:
 * the producer keeps the ring's memory alive until then. abort_run is set by
 * whoever learns that the other side died, so no one spins for ever (mpod's
 * in-process producer; DPDK's children are simply killed). */
struct ring_bench_control {
  uint32_t ready __attribute__((aligned(64)));
  uint32_t go __attribute__((aligned(64)));
  uint32_t abort_run __attribute__((aligned(64)));
};

static inline int ring_bench_aborted(const struct ring_bench_control* c) {
  return __atomic_load_n(&c->abort_run, __ATOMIC_RELAXED) != 0;
}

/* Waits until *word == value; returns 0 if the run was aborted. */
static inline int ring_bench_wait_for(const struct ring_bench_control* c, const uint32_t* word, uint32_t value) {
  while (__atomic_load_n(word, __ATOMIC_ACQUIRE) != value) {
    if (ring_bench_aborted(c)) return 0;
    ring_bench_relax();
  }
  return 1;
}

/* Producer side of case c: returns once the consumer is ready and told to go. */
static inline int ring_bench_producer_start(struct ring_bench_control* c, uint32_t case_no) {
  if (!ring_bench_wait_for(c, &c->ready, case_no)) return 0;
  __atomic_store_n(&c->go, case_no, __ATOMIC_RELEASE);
  return 1;
}

/* Consumer side of case c: returns when the producer has started. */
static inline int ring_bench_consumer_start(struct ring_bench_control* c, uint32_t case_no) {
  __atomic_store_n(&c->ready, case_no, __ATOMIC_RELEASE);
  return ring_bench_wait_for(c, &c->go, case_no);
}

/* After its last case the consumer releases the producer... */
static inline void ring_bench_consumer_finish(struct ring_bench_control* c) {
  __atomic_store_n(&c->ready, RING_BENCH_CASES + 1, __ATOMIC_RELEASE);
}
/* ...which waits for that before its process lets go of the ring. */
static inline int ring_bench_producer_finish(struct ring_bench_control* c) {
  return ring_bench_wait_for(c, &c->ready, RING_BENCH_CASES + 1);
}

/* The 4-producer/4-consumer rows: threads of one process, all allowed on
 * CPUs 0-1, started together; the clock runs from go to the last consumer's
 * exit. With more runnable threads than CPUs a run can stall for seconds: a
 * thread preempted between claiming and publishing holds back its whole side,
 * and threads busy-polling a full or empty ring keep it off the CPU. So a run
 * that reaches RING_BENCH_MPMC_LIMIT_S is stopped: producers stop, consumers
 * drain, and the row reports what was moved in that time (stopped=1). */
#define RING_BENCH_MPMC_LIMIT_S 5

struct ring_bench_mpmc_sync {
  uint32_t at_start __attribute__((aligned(64))); /* threads waiting for go */
  uint32_t go __attribute__((aligned(64)));
  uint32_t producers_done __attribute__((aligned(64)));
  uint32_t stop __attribute__((aligned(64)));
};

/* One thread; `body` is the library's loop and returns how many elements it moved. */
struct ring_bench_worker {
  void* ring;
  struct ring_bench_mpmc_sync* sync;
  unsigned burst;
  uint64_t share; /* producers: elements to enqueue */
  int producer;
  uint64_t (*body)(struct ring_bench_worker*);
  uint64_t moved;
};

/* A producer checks this before each enqueue. */
static inline int ring_bench_mpmc_stopped(const struct ring_bench_worker* w) {
  return __atomic_load_n(&w->sync->stop, __ATOMIC_RELAXED) != 0;
}

/* A consumer reads this before a dequeue; if it was true and the dequeue then
 * finds the ring empty, every element has been taken and the consumer stops. */
static inline int ring_bench_mpmc_producers_finished(const struct ring_bench_worker* w) {
  return __atomic_load_n(&w->sync->producers_done, __ATOMIC_ACQUIRE) == RING_BENCH_THREADS_PER_SIDE;
}

static inline void* ring_bench_worker_main(void* arg) {
  struct ring_bench_worker* w = (struct ring_bench_worker*)arg;
  ring_bench_pin_thread(0, 1);
  __atomic_fetch_add(&w->sync->at_start, 1, __ATOMIC_ACQ_REL);
  while (!__atomic_load_n(&w->sync->go, __ATOMIC_ACQUIRE)) ring_bench_relax();
  w->moved = w->body(w);
  /* Its last enqueue has returned: release makes those elements visible to a
   * consumer that reads producers_done. */
  if (w->producer) __atomic_fetch_add(&w->sync->producers_done, 1, __ATOMIC_RELEASE);
  return NULL;
}

struct ring_bench_mpmc_result {
  uint64_t elapsed_ns, moved;
  int stopped;
};

/* Runs one row. The calling thread sleeps in pthread_timedjoin_np while the
 * workers run: a thread that woke up periodically to watch the clock would
 * preempt workers, maybe one between claiming and publishing. Returns 0, or
 * -1 if elements went missing or were duplicated. */
static inline int ring_bench_mpmc_run(void* ring, unsigned burst, uint64_t elements,
                                      uint64_t (*produce)(struct ring_bench_worker*),
                                      uint64_t (*consume)(struct ring_bench_worker*), struct ring_bench_mpmc_result* out) {
  enum { SIDE = RING_BENCH_THREADS_PER_SIDE, N = 2 * SIDE };
  struct ring_bench_mpmc_sync sync;
  struct ring_bench_worker w[N];
  pthread_t tid[N];
  memset(&sync, 0, sizeof sync);
  for (int i = 0; i < N; ++i) {
    const int producer = i < SIDE;
    const struct ring_bench_worker init = {ring, &sync, burst, elements / SIDE, producer, producer ? produce : consume, 0};
    w[i] = init;
    if (pthread_create(&tid[i], NULL, ring_bench_worker_main, &w[i]) != 0) return -1;
  }
  ring_bench_pin_thread(0, 1);
  while (__atomic_load_n(&sync.at_start, __ATOMIC_ACQUIRE) != N) ring_bench_relax();
  struct timespec limit;
  clock_gettime(CLOCK_REALTIME, &limit);
  limit.tv_sec += RING_BENCH_MPMC_LIMIT_S;
  const uint64_t t0 = ring_bench_now_ns();
  __atomic_store_n(&sync.go, 1, __ATOMIC_RELEASE);
  out->stopped = 0;
  for (int i = 0; i < N; ++i) {
    if (i < SIDE && !out->stopped) {
      if (pthread_timedjoin_np(tid[i], NULL, &limit) == 0) continue;
      __atomic_store_n(&sync.stop, 1, __ATOMIC_RELAXED);
      out->stopped = 1;
    }
    pthread_join(tid[i], NULL);
  }
  out->elapsed_ns = ring_bench_now_ns() - t0;
  uint64_t sent = 0, got = 0;
  for (int i = 0; i < N; ++i) *(i < SIDE ? &sent : &got) += w[i].moved;
  out->moved = got;
  return got == sent && (out->stopped || got == elements) ? 0 : -1;
}

#endif
