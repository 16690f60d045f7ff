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

namespace {

// One trial's dequeues; 0 if the run was aborted.
int consume(void* ring, ring_bench_case c, uint64_t elements, const ring_bench_trials* p, uint64_t* failed_calls) {
  mpod::Ring r = *static_cast<mpod::Ring*>(ring);  // by value, as DPDK's side holds its rte_ring* in a local
  void* out[RING_BENCH_MAX_BURST];
  uint64_t failed = 0;
  for (uint64_t got = 0; got < elements; got += c.burst)
    while (ring_bench::dequeue(r, c.multi, out, c.burst) == 0) {
      if (ring_bench_aborted(p)) return 0;
      ++failed;
      ring_bench_relax();
    }
  *failed_calls = failed;
  return 1;
}

}  // namespace

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
    if (!ring_bench_run_consumer(p, RING_BENCH_SIDE_MPOD, &ring, consume)) {
      std::fprintf(stderr, "mpod-ring-consumer: the run was aborted (a partner process died or the driver stopped)\n");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpod-ring-consumer: %s\n", e.what());
    return 1;
  }
}
