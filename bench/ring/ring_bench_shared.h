/* What mpod-bench-ring, mpod-ring-consumer and dpdk-ring-bench agree on:
 * the ring geometry, the rows, the interleaved trials (turns, the
 * producer/consumer hand-shake, times) and the 4p4c harness. Plain C (and
 * valid C++), so mpod's and DPDK's sides run the same protocol from one
 * definition and the only thing that differs between the two columns of the
 * table is the ring library.
 */
#ifndef MPOD_BENCH_RING_SHARED_H
#define MPOD_BENCH_RING_SHARED_H

/* C files define _GNU_SOURCE first: CPU_SET, sched_setaffinity, pthread_timedjoin_np. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

/* Makes the compiler keep what a dequeue wrote to `out`: a consumer that
 * never reads what it dequeued would let it drop the loads of the slots
 * (both libraries' calls are inline), and the rows would measure the
 * indices alone. A real consumer reads the pointers it takes. */
static inline void ring_bench_keep(void* const* out) { __asm__ volatile("" : : "r"(out) : "memory"); }

/* ---- One-thread and two-process rows: interleaved trials ----
 *
 * The two vCPUs of this kind of machine are moved about by the host: the
 * cost of a cache line crossing from CPU 0 to CPU 1 changes 2-5x from one
 * moment to the next, and even one core's speed changes 1.5x, for both
 * libraries alike. So these rows are measured as many short trials, mpod's
 * and DPDK's in alternation, with all four processes (mpod's producer and
 * consumer, DPDK's producer and consumer) alive throughout and only one
 * side running at a time; each trial is compared with the other library's
 * trial next to it in time.
 *
 * Rows: 0..CASES-1 are the one-thread rows (the producer process alone on
 * CPU 0 enqueues a burst and dequeues it), CASES..2*CASES-1 the two-process
 * rows (producer on CPU 0, consumer on CPU 1), case row % CASES. Both use
 * the side's one ring, empty between trials.
 *
 * Schedule: round r runs every row, each twice in a row, once per side, the
 * side going first alternating with r. Trial t is round t / (2 * ROWS), row
 * (t / 2) % ROWS, side (t % 2) ^ (r % 2), side 0 being mpod and side 1
 * DPDK. Trial t may run once `turn` == t; whoever timed it stores its time,
 * then sets turn to the next trial that runs and wakes everyone. The side
 * whose turn it is not sleeps in futex(2) on `turn`, so it takes no CPU from
 * the side being measured. Everything lives in one plain file that the
 * driver creates and every process maps (MAP_SHARED): neither library's
 * memory. */
#define RING_BENCH_SIDE_MPOD 0
#define RING_BENCH_SIDE_DPDK 1
#define RING_BENCH_ROWS (2 * RING_BENCH_CASES)
#define RING_BENCH_MAX_TRIALS (2 * RING_BENCH_ROWS * 1000) /* up to 1000 rounds */
#define RING_BENCH_TURN_PENDING 0xfffffff0u /* before the driver starts the first trial */
#define RING_BENCH_WANT_LOCAL 1u
#define RING_BENCH_WANT_PAIR 2u

struct ring_bench_trials {
  uint32_t turn __attribute__((aligned(64)));  /* the trial that may run; == trials: all done */
  uint32_t ready __attribute__((aligned(64))); /* t + 1: trial t's consumer waits for go */
  uint32_t go __attribute__((aligned(64)));    /* t + 1: trial t's producer has started */
  uint32_t abort_run __attribute__((aligned(64)));
  uint32_t trials;    /* 2 * ROWS * rounds */
  uint32_t rounds;
  uint64_t elements;  /* per trial */
  uint32_t dpdk_runs; /* 0: DPDK's side is not there (not built, or no hugepages); its trials are skipped */
  uint32_t wanted;    /* RING_BENCH_WANT_*: which rows run; the others' trials are skipped */
  uint64_t elapsed_ns[RING_BENCH_MAX_TRIALS];
  /* Two-process trials: calls that moved nothing during trial t, the
   * producer's (ring full) and the consumer's (ring empty). They tell which
   * way the ring settled. */
  uint64_t full_polls[RING_BENCH_MAX_TRIALS], empty_polls[RING_BENCH_MAX_TRIALS];
};

static inline int ring_bench_row_is_pair(int row) { return row >= RING_BENCH_CASES; }
static inline struct ring_bench_case ring_bench_row_case(int row) { return ring_bench_cases[row % RING_BENCH_CASES]; }

static inline void ring_bench_trial_of(uint32_t t, int* row, int* side) {
  const uint32_t round = t / (2 * RING_BENCH_ROWS);
  *row = (int)((t / 2) % RING_BENCH_ROWS);
  *side = (int)((t % 2) ^ (round % 2));
}

/* Whether trial t runs: its side takes part and its row is wanted. */
static inline int ring_bench_trial_runs(const struct ring_bench_trials* p, uint32_t t) {
  int row, side;
  ring_bench_trial_of(t, &row, &side);
  const uint32_t kind = ring_bench_row_is_pair(row) ? RING_BENCH_WANT_PAIR : RING_BENCH_WANT_LOCAL;
  return (side == RING_BENCH_SIDE_MPOD || p->dpdk_runs) && (p->wanted & kind);
}

/* The first trial at or after t that runs; trials if none. */
static inline uint32_t ring_bench_next_trial(const struct ring_bench_trials* p, uint32_t t) {
  while (t < p->trials && !ring_bench_trial_runs(p, t)) ++t;
  return t;
}

static inline int ring_bench_aborted(const struct ring_bench_trials* p) {
  return __atomic_load_n(&p->abort_run, __ATOMIC_RELAXED) != 0;
}

/* Sleeps until turn == t (returns 1), or the run is aborted (returns 0). */
static inline int ring_bench_wait_turn(struct ring_bench_trials* p, uint32_t t) {
  for (;;) {
    const uint32_t now = __atomic_load_n(&p->turn, __ATOMIC_ACQUIRE);
    if (now == t) return 1;
    if (ring_bench_aborted(p)) return 0;
    /* 50 ms: a dead partner's abort is noticed without a wake-up. */
    struct timespec limit = {0, 50 * 1000 * 1000};
    syscall(SYS_futex, &p->turn, FUTEX_WAIT, now, &limit, NULL, 0);
  }
}

static inline void ring_bench_set_turn(struct ring_bench_trials* p, uint32_t t) {
  __atomic_store_n(&p->turn, t, __ATOMIC_RELEASE);
  syscall(SYS_futex, &p->turn, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* After trial t: store its time and let the next trial run. */
static inline void ring_bench_trial_done(struct ring_bench_trials* p, uint32_t t, uint64_t elapsed_ns) {
  p->elapsed_ns[t] = elapsed_ns;
  ring_bench_set_turn(p, ring_bench_next_trial(p, t + 1));
}

static inline void ring_bench_abort_trials(struct ring_bench_trials* p) {
  __atomic_store_n(&p->abort_run, 1, __ATOMIC_RELAXED);
  syscall(SYS_futex, &p->turn, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Spins (both processes of the running pair are awake) until *word == value;
 * returns 0 if the run was aborted. */
static inline int ring_bench_spin_for(const struct ring_bench_trials* p, const uint32_t* word, uint32_t value) {
  while (__atomic_load_n(word, __ATOMIC_ACQUIRE) != value) {
    if (ring_bench_aborted(p)) return 0;
    ring_bench_relax();
  }
  return 1;
}

/* A library's loops. produce/consume: one side of a two-process trial,
 * counting the calls that found the ring full/empty; 0 if aborted. local:
 * one thread enqueues a burst and dequeues it until `elements` went
 * through; returns the nanoseconds it took, 0 if a call failed. */
typedef int (*ring_bench_move_fn)(void* ring, struct ring_bench_case c, uint64_t elements,
                                  const struct ring_bench_trials* p, uint64_t* failed_calls);
typedef uint64_t (*ring_bench_local_fn)(void* ring, struct ring_bench_case c, uint64_t elements);

/* The producer process of one side (CPU 0): runs its side's one-thread
 * trials alone, and produces in its two-process trials once its consumer
 * is ready. Finally waits until every trial has run, so that the ring
 * outlives its consumer's use of it. Returns 0 if aborted or a local trial
 * failed. */
static inline int ring_bench_run_producer(struct ring_bench_trials* p, int side, void* ring, ring_bench_move_fn produce,
                                          ring_bench_local_fn local) {
  for (uint32_t t = 0; t < p->trials; ++t) {
    int row, s;
    ring_bench_trial_of(t, &row, &s);
    if (s != side || !ring_bench_trial_runs(p, t)) continue;
    if (!ring_bench_wait_turn(p, t)) return 0;
    if (!ring_bench_row_is_pair(row)) {
      const uint64_t ns = local(ring, ring_bench_row_case(row), p->elements);
      if (ns == 0) {
        ring_bench_abort_trials(p);
        return 0;
      }
      ring_bench_trial_done(p, t, ns);
      continue;
    }
    if (!ring_bench_spin_for(p, &p->ready, t + 1)) return 0;
    __atomic_store_n(&p->go, t + 1, __ATOMIC_RELEASE);
    if (!produce(ring, ring_bench_row_case(row), p->elements, p, &p->full_polls[t])) return 0;
  }
  return ring_bench_wait_turn(p, p->trials);
}

/* The consumer process of one side (CPU 1): for each of its side's
 * two-process trials, waits for its turn, tells its producer, times
 * consume() from go to its last element and hands the turn on. */
static inline int ring_bench_run_consumer(struct ring_bench_trials* p, int side, void* ring, ring_bench_move_fn consume) {
  for (uint32_t t = 0; t < p->trials; ++t) {
    int row, s;
    ring_bench_trial_of(t, &row, &s);
    if (s != side || !ring_bench_row_is_pair(row) || !ring_bench_trial_runs(p, t)) continue;
    if (!ring_bench_wait_turn(p, t)) return 0;
    __atomic_store_n(&p->ready, t + 1, __ATOMIC_RELEASE);
    if (!ring_bench_spin_for(p, &p->go, t + 1)) return 0;
    const uint64_t t0 = ring_bench_now_ns();
    if (!consume(ring, ring_bench_row_case(row), p->elements, p, &p->empty_polls[t])) return 0;
    ring_bench_trial_done(p, t, ring_bench_now_ns() - t0);
  }
  return 1;
}

/* Maps the driver's file of the interleaved trials (read-write, shared);
 * NULL with a message on stderr if it cannot. */
static inline struct ring_bench_trials* ring_bench_map_trials(const char* path) {
  const int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "ring bench: cannot open %s: %s (it is made by mpod-bench-ring; start me from it)\n", path,
            strerror(errno));
    return NULL;
  }
  void* m = mmap(NULL, sizeof(struct ring_bench_trials), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    fprintf(stderr, "ring bench: cannot map %s: %s\n", path, strerror(errno));
    return NULL;
  }
  return (struct ring_bench_trials*)m;
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
