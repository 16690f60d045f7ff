// mpod-ring-consumer [runtime options] -- ELEMENTS
//
// The consumer of mpod-bench-ring's two-process rows: a secondary that finds
// the primary's ring by name, pins itself to CPU 1 and times each row from
// the producer's go to its last element, printing "row name=pair-..." lines
// as dpdk-ring-bench's consumer does for rte_ring.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "mpod/runtime.hpp"
#include "mpod_ring_ops.hpp"

namespace {

// Nanoseconds from go to the last element of case `case_no`; 0 if aborted.
uint64_t consume(mpod::Ring r, ring_bench_control* ctl, uint32_t case_no, uint64_t elements) {
  const ring_bench_case c = ring_bench_cases[case_no - 1];
  void* out[RING_BENCH_MAX_BURST];
  if (!ring_bench_consumer_start(ctl, case_no)) return 0;
  const uint64_t t0 = ring_bench_now_ns();
  for (uint64_t got = 0; got < elements; got += c.burst)
    while (ring_bench::dequeue(r, c.multi, out, c.burst) == 0) {
      if (ring_bench_aborted(ctl)) return 0;
      ring_bench_relax();
    }
  return ring_bench_now_ns() - t0;
}

int run(mpod::Runtime& rt, uint64_t elements) {
  mpod::Ring ring = mpod::Ring::lookup(rt, ring_bench::kPairRing);
  auto zone = rt.memzones().lookup(ring_bench::kControlZone);
  if (!zone) {
    std::fprintf(stderr, "mpod-ring-consumer: no memzone %s: start me from mpod-bench-ring\n", ring_bench::kControlZone);
    return 1;
  }
  auto* ctl = static_cast<ring_bench_control*>(zone->addr);
  ring_bench_pin_thread(RING_BENCH_CONSUMER_CPU, RING_BENCH_CONSUMER_CPU);
  for (uint32_t i = 1; i <= RING_BENCH_CASES; ++i) {
    const uint64_t elapsed = consume(ring, ctl, i, elements);
    if (elapsed == 0) {
      std::fprintf(stderr, "mpod-ring-consumer: the producer went away\n");
      return 1;
    }
    char name[64];
    ring_bench_row_name(name, sizeof name, "pair", ring_bench_cases[i - 1].multi, ring_bench_cases[i - 1].burst);
    ring_bench_print_row(name, elements, elapsed, 0);
  }
  ring_bench_consumer_finish(ctl);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int first = 0;
    auto rt = mpod::Runtime::start(argc, argv, &first);
    const uint64_t elements = first < argc ? std::strtoull(argv[first], nullptr, 10) : 0;
    if (elements == 0 || elements % RING_BENCH_ELEM_GRAIN != 0) {
      std::fprintf(stderr, "usage: mpod-ring-consumer [runtime options] -- ELEMENTS (a multiple of %u)\n",
                   RING_BENCH_ELEM_GRAIN);
      return 2;
    }
    return run(*rt, elements);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpod-ring-consumer: %s\n", e.what());
    return 1;
  }
}
