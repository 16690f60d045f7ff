// mpod-ring-consumer [runtime options] -- TRIALS_FILE
//
// The consumer of mpod-bench-ring's two-process rows: a secondary that finds
// the primary's ring by name, pins itself to CPU 1, prints READY, and times
// each of mpod's two-process trials from the producer's go to its last
// element into TRIALS_FILE, taking turns with DPDK's processes
// (ring_bench_shared.h), as dpdk-ring-bench's consumer does for rte_ring.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "mpod/runtime.hpp"
#include "mpod_ring_ops.hpp"

int main(int argc, char** argv) {
  try {
    int first = 0;
    auto rt = mpod::Runtime::start(argc, argv, &first);
    if (first >= argc) {
      std::fprintf(stderr, "usage: mpod-ring-consumer [runtime options] -- TRIALS_FILE (made by mpod-bench-ring)\n");
      return 2;
    }
    ring_bench_trials* p = ring_bench_map_trials(argv[first]);
    if (!p) return 1;
    mpod::Ring ring = mpod::Ring::lookup(*rt, ring_bench::kPairRing);
    ring_bench_pin_thread(RING_BENCH_CONSUMER_CPU, RING_BENCH_CONSUMER_CPU);
    std::printf("READY\n");
    std::fflush(stdout);
    if (!ring_bench_run_consumer(p, RING_BENCH_SIDE_MPOD, &ring, ring_bench::consume_trial)) {
      std::fprintf(stderr, "mpod-ring-consumer: the run was aborted (a partner process died or the driver stopped)\n");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpod-ring-consumer: %s\n", e.what());
    return 1;
  }
}
