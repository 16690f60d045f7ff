/* dpdk-mp-bench primary|secondary THREADS COUNT [EAL options]
 *
 * DPDK 22.11's multi-process channel, measured the way mpod-bench-channel
 * measures mpod's: the primary registers an action that replies with an empty
 * message; the secondary times rte_mp_request_sync round trips from THREADS
 * threads, COUNT each, and prints one line:
 *   RESULT p50_us=.. p99_us=.. rps=.. n=..
 * Written in C against DPDK's public API only.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>

/* DPDK allows one pending request per (peer, action name), so each requester
 * thread uses its own action: mpod_bench_ping0 .. mpod_bench_ping63. */
#define ACTION_FMT "mpod_bench_ping%ld"
#define MAX_THREADS 64

static int on_ping(const struct rte_mp_msg* msg, const void* peer) {
  struct rte_mp_msg reply;
  memset(&reply, 0, sizeof reply);
  memcpy(reply.name, msg->name, sizeof reply.name);
  return rte_mp_reply(&reply, peer);
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int count_per_thread;
static double* samples;
static long gap_us; /* DPDK_MP_BENCH_GAP_US: pause between requests, so the receivers go to sleep */

static void* requester(void* arg) {
  double* out = samples + (long)arg * count_per_thread;
  struct timespec ts = {5, 0};
  for (int i = 0; i < count_per_thread; ++i) {
    struct rte_mp_msg req;
    struct rte_mp_reply reply;
    memset(&req, 0, sizeof req);
    snprintf(req.name, sizeof req.name, ACTION_FMT, (long)arg);
    double t0 = now_us();
    if (rte_mp_request_sync(&req, &reply, &ts) != 0 || reply.nb_received != 1) {
      fprintf(stderr, "dpdk-mp-bench: request %d failed\n", i);
      exit(1);
    }
    out[i] = now_us() - t0;
    free(reply.msgs);
    if (gap_us > 0) usleep((useconds_t)gap_us);
  }
  return NULL;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: dpdk-mp-bench primary|secondary THREADS COUNT [EAL options]\n");
    return 2;
  }
  int primary = strcmp(argv[1], "primary") == 0;
  int threads = atoi(argv[2]);
  count_per_thread = atoi(argv[3]);
  argv[3] = argv[0];  /* EAL sees: prog, EAL options */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (primary) pthread_sigmask(SIG_BLOCK, &set, NULL);
  if (rte_eal_init(argc - 3, argv + 3) < 0) {
    fprintf(stderr, "dpdk-mp-bench: rte_eal_init failed\n");
    return 1;
  }
  if (primary) {
    for (long t = 0; t < MAX_THREADS; ++t) {
      char name[64];
      snprintf(name, sizeof name, ACTION_FMT, t);
      if (rte_mp_action_register(name, on_ping) != 0) return 1;
    }
    printf("READY\n");
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    rte_eal_cleanup();
    return 0;
  }
  const char* gap = getenv("DPDK_MP_BENCH_GAP_US");
  gap_us = gap ? atol(gap) : 0;
  long n = (long)threads * count_per_thread;
  samples = calloc(n, sizeof(double));
  if (threads < 1 || threads > MAX_THREADS) return 2;
  pthread_t tid[MAX_THREADS];
  double t0 = now_us();
  for (long t = 0; t < threads; ++t) pthread_create(&tid[t], NULL, requester, (void*)t);
  for (long t = 0; t < threads; ++t) pthread_join(tid[t], NULL);
  double elapsed_s = (now_us() - t0) / 1e6;
  qsort(samples, n, sizeof(double), cmp);
  printf("RESULT p50_us=%.2f p99_us=%.2f rps=%.0f n=%ld\n", samples[n / 2], samples[(long)(n * 0.99)], n / elapsed_s, n);
  rte_eal_cleanup();
  return 0;
}
