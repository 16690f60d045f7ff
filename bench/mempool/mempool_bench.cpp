// mpod-bench-mempool [--objects=N] [--repeat=R] [--quick]: mpod's Mempool
// beside DPDK 22.11's rte_mempool in the same run, one table with a ratio per row.
//
// Rows (mempool_bench_shared.h has the exact list; both sides run the same
// loop, DPDK's mempool_perf_autotest): each thread takes 32 objects in calls
// of 1 or 32, then puts them back the same way; the figure is the cost of one
// get plus one put per object, averaged over the threads. Pools of 8191
// objects of 64 bytes with a per-thread cache of 256 (DPDK: per-lcore cache,
// rte_mempool_create cache_size 256), and without caches for reference;
// 1 thread on CPU 0, or 2 threads on CPUs 0 and 1 sharing the pool.
//
// mpod's threads are plain std::threads of this process (pinned like EAL
// pins its lcores); DPDK's are EAL lcores of a dpdk-mempool-bench child
// (-l 0-1, rte_eal_remote_launch). Both on 2 MB hugepages when there are
// enough free, plain memory for both otherwise. Each row is run R times,
// mpod's run and DPDK's (a child per row) back to back, taking turns to go
// first; the table keeps each side's best run (on a shared 2-core machine
// the slower runs measure the neighbours, not the pool), the median of the
// ratios of back-to-back runs, and every run is listed under it.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/child_process.hpp"
#include "common/hugepages.hpp"
#include "common/interrupt.hpp"
#include "common/mpod_primary.hpp"
#include "common/options.hpp"
#include "common/paired.hpp"
#include "common/scratch.hpp"
#include "common/table.hpp"
#include "mempool_bench_shared.h"
#include "mpod/mempool.hpp"
#include "mpod/runtime.hpp"

namespace {

using namespace mpod_bench;

constexpr uint64_t kDefaultObjects = 16'000'000;  // per thread and row
constexpr uint64_t kQuickObjects = 1'000'000;
constexpr int kDefaultRepeat = 15;
constexpr uint64_t kMemoryMb = 16;             // each side: 8 hugepages of 2 MB
constexpr long kHugepagesNeeded = 2 * 8 + 8;   // mpod's runtime and DPDK's child are up at once, plus slack

struct Settings {
  uint64_t objects = kDefaultObjects;
  int repeat = kDefaultRepeat;
};

// ---- the DPDK child ----

using Rows = std::map<std::string, double>;  // row name -> ns per object

// The "row name=X ns_per_obj=Y ..." lines of a child's output.
Rows parse_rows(const std::string& out) {
  Rows rows;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("row ")) continue;
    std::istringstream words(line.substr(4));
    std::string name;
    double ns = 0;
    for (std::string w; words >> w;) {
      if (w.starts_with("name=")) name = w.substr(5);
      if (w.starts_with("ns_per_obj=")) ns = std::strtod(w.c_str() + 11, nullptr);
    }
    if (!name.empty() && ns > 0) rows[name] = ns;
  }
  return rows;
}

// Row `row` (an index into mempool_bench_cases) in a dpdk-mempool-bench child.
Rows dpdk_rows(const Scratch& s, uint64_t objects, int row) {
  std::vector<std::string> a = {s.bin + "/dpdk-mempool-bench", std::to_string(objects), std::to_string(row),
                                "--proc-type=primary", "-l", "0-1", "-m", std::to_string(kMemoryMb)};
  const std::vector<std::string> eal = s.dpdk_eal_options(s.dpdk_prefix);
  a.insert(a.end(), eal.begin(), eal.end());
  Child c;
  c.start(a);
  // 30 s to start, then 1 us per object: about 20x the slowest row seen.
  const bool ok = c.finish(deadline_after(30 + 1e-6 * double(objects) * 2)) == 0;
  if (!ok)
    std::fprintf(stderr, "mpod-bench-mempool: dpdk-mempool-bench failed or timed out; its rows are missing. It printed:\n%s\n",
                 c.output().c_str());
  return parse_rows(c.output());
}

// ---- mpod's side ----

// One call of mpod's API for n objects: the single-object call for n == 1,
// bulk otherwise; exactly what DPDK's side calls.
inline bool get_n(mpod::Mempool& p, void** objs, unsigned n) { return n == 1 ? p.get(objs) : p.get_bulk(objs, n); }
inline void put_n(mpod::Mempool& p, void* const* objs, unsigned n) {
  if (n == 1) p.put(objs[0]);
  else p.put_bulk(objs, n);
}

// KEEP objects taken in calls of `bulk`, then given back the same way.
bool iterate(mpod::Mempool& p, void** held, unsigned bulk, uint64_t iterations) {
  for (uint64_t k = 0; k < iterations; ++k) {
    for (unsigned i = 0; i < MEMPOOL_BENCH_KEEP; i += bulk)
      if (!get_n(p, held + i, bulk)) return false;
    for (unsigned i = 0; i < MEMPOOL_BENCH_KEEP; i += bulk) put_n(p, held + i, bulk);
  }
  return true;
}

struct MpodSide {
  std::unique_ptr<mpod::Runtime> rt;
  mpod::Mempool cached, uncached;
};

MpodSide start_mpod(const Scratch& s) {
  MpodSide m;
  m.rt = mpod::Runtime::start(primary_options(s, "mempoolbench", kMemoryMb));
  m.cached = mpod::Mempool::create(*m.rt, "bench_c256", MEMPOOL_BENCH_OBJECTS, MEMPOOL_BENCH_ELT_SIZE,
                                   {MEMPOOL_BENCH_CACHE, {}});
  m.uncached = mpod::Mempool::create(*m.rt, "bench_c0", MEMPOOL_BENCH_OBJECTS, MEMPOOL_BENCH_ELT_SIZE, {0, {}});
  return m;
}

// Row `row` (an index into mempool_bench_cases); thread t on CPU t, as EAL
// places lcores 0 and 1.
Rows mpod_rows(MpodSide& m, uint64_t objects, int row) {
  const mempool_bench_case& c = mempool_bench_cases[row];
  throw_if_interrupted();
  mpod::Mempool& pool = c.cache ? m.cached : m.uncached;
  uint32_t arrived = 0;
  uint64_t elapsed[MEMPOOL_BENCH_MAX_THREADS] = {};
  bool failed[MEMPOOL_BENCH_MAX_THREADS] = {};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < c.threads; ++t)
    threads.emplace_back([&, t] {
      mempool_bench_pin_thread(int(t));
      void* held[MEMPOOL_BENCH_KEEP];
      if (!iterate(pool, held, c.bulk, mempool_bench_warmup(objects))) failed[t] = true;
      mempool_bench_barrier(&arrived, c.threads);
      const uint64_t t0 = mempool_bench_now_ns();
      if (!iterate(pool, held, c.bulk, mempool_bench_iterations(objects))) failed[t] = true;
      elapsed[t] = mempool_bench_now_ns() - t0;
    });  // the thread's cache goes back to the pool when it exits
  for (auto& t : threads) t.join();
  uint64_t ns = 0;
  for (unsigned t = 0; t < c.threads; ++t) {
    if (failed[t]) throw std::runtime_error("mpod: a get failed on a pool with objects to spare");
    ns += elapsed[t];
  }
  char name[64];
  mempool_bench_row_name(name, sizeof name, c);
  for (mpod::Mempool* p : {&m.cached, &m.uncached})
    if (p->available() != MEMPOOL_BENCH_OBJECTS)
      throw std::runtime_error("mpod: " + std::to_string(p->available()) + " objects of " +
                               std::to_string(MEMPOOL_BENCH_OBJECTS) + " free in '" + p->name() + "' after row " + name);
  return {{name, double(ns) / double(mempool_bench_iterations(objects) * MEMPOOL_BENCH_KEEP * c.threads)}};
}

// ---- the run ----

struct Samples {
  std::vector<double> mpod, dpdk;  // ns per object, one per run
};
using Results = std::map<std::string, Samples>;

double best(const std::vector<double>& runs) {
  return runs.empty() ? std::numeric_limits<double>::infinity() : *std::min_element(runs.begin(), runs.end());
}

std::string list_runs(const std::vector<double>& runs) {
  std::string out;
  for (double v : runs) out += (out.empty() ? "" : " ") + fmt(v, 2);
  return out.empty() ? "-" : out;
}

void report(const Results& results, const Settings& st, const Scratch& s) {
  std::printf("Mempool: mpod beside DPDK 22.11 rte_mempool, same run; pools of %u objects of %u bytes; each thread "
              "takes %u objects in calls of <bulk> and puts them back, %llu objects per thread and row; %s.\n",
              MEMPOOL_BENCH_OBJECTS, MEMPOOL_BENCH_ELT_SIZE, MEMPOOL_BENCH_KEEP, (unsigned long long)st.objects,
              memory_description(s.huge_dir).c_str());
  std::printf("ns/obj = one get + one put of one object, mean over the threads; best of %d runs (row by row, mpod's "
              "and DPDK's runs back to back, taking turns to go first).\n",
              st.repeat);
  std::printf("mpod threads: std::threads pinned to CPU 0 (and 1); DPDK threads: EAL lcores 0 (and 1), -l 0-1.\n");
  std::printf("ratio = DPDK ns/obj / mpod ns/obj: above 1, mpod is faster. per pair: each run of a row against the "
              "other side's run of it just before or after (a DPDK child's start apart), median and quartiles of "
              "those ratios (bench/common/paired.hpp).\n\n");
  std::vector<std::vector<std::string>> t = {{"cache", "bulk", "threads", "mpod ns/obj", "DPDK ns/obj", "ratio",
                                              "DPDK/mpod per pair", "pairs mpod faster"}};
  std::vector<std::string> all;
  for (const mempool_bench_case& c : mempool_bench_cases) {
    char name[64];
    mempool_bench_row_name(name, sizeof name, c);
    auto it = results.find(name);
    const Samples runs = it == results.end() ? Samples{} : it->second;
    const double m = best(runs.mpod), d = best(runs.dpdk);
    const bool paired = !runs.mpod.empty() && runs.mpod.size() == runs.dpdk.size();
    const PairedSummary ps = paired ? summarise_pairs(runs.mpod, runs.dpdk) : PairedSummary{};
    t.push_back({c.cache ? std::to_string(c.cache) : "none", std::to_string(c.bulk), std::to_string(c.threads),
                 fmt(m, 2), fmt(d, 2), fmt(d / m, 2), paired ? ratio_with_range(ps, 2) : "-",
                 paired ? std::to_string(ps.b_above) + " of " + std::to_string(ps.pairs) : "-"});
    all.push_back("  " + std::string(name) + ": mpod " + list_runs(runs.mpod) + "; DPDK " + list_runs(runs.dpdk));
  }
  print_table(t, 3);
  std::printf("\nEvery run, ns/obj in run order (row c<cache>-b<bulk>-t<threads>):\n");
  for (auto& line : all) std::puts(line.c_str());
  if (!s.have_dpdk)
    std::printf("\nDPDK comparison skipped: built without libdpdk-dev (apt-get install libdpdk-dev, rebuild)\n");
}

Settings parse_args(int argc, char** argv) {
  Settings st;
  parse_options(argc, argv,
                {value_option("--objects=", st.objects), value_option("--repeat=", st.repeat),
                 {"--quick", [&](const std::string&) { st.objects = kQuickObjects, st.repeat = 1; }}},
                [] {
                  std::fprintf(stderr, "usage: mpod-bench-mempool [--objects=N per thread and row (default %llu)] "
                                       "[--repeat=R (default %d)] [--quick]\n",
                               (unsigned long long)kDefaultObjects, kDefaultRepeat);
                });
  st.objects = std::max<uint64_t>(MEMPOOL_BENCH_KEEP, st.objects / MEMPOOL_BENCH_KEEP * MEMPOOL_BENCH_KEEP);
  st.repeat = std::max(1, st.repeat);
  return st;
}

int run(const Settings& st) {
  if (std::thread::hardware_concurrency() < 2)
    throw std::runtime_error("the two-thread rows need CPUs 0 and 1");
  Scratch s("mpod-bench-mempool", kHugepagesNeeded, "dpdk-mempool-bench");
  s.dpdk_prefix = s.track_prefix("mpodmempool" + std::to_string(getpid()));
  MpodSide m = start_mpod(s);
  Results results;
  // Row by row, the two sides back to back (the side going first
  // alternating), so that each pair of runs is as close in time as a DPDK
  // child's start allows.
  for (int rep = 0; rep < st.repeat; ++rep) {
    const uint64_t t0 = mempool_bench_now_ns();
    for (int row = 0; row < MEMPOOL_BENCH_CASES; ++row) {
      const bool dpdk_first = (rep + row) % 2 == 1;
      for (int turn = 0; turn < 2; ++turn) {
        const bool dpdk = (turn == 0) == dpdk_first;
        if (dpdk && !s.have_dpdk) continue;
        for (auto& [name, ns] : dpdk ? dpdk_rows(s, st.objects, row) : mpod_rows(m, st.objects, row))
          (dpdk ? results[name].dpdk : results[name].mpod).push_back(ns);
      }
    }
    std::fprintf(stderr, "mpod-bench-mempool: repetition %d/%d: %.1f s\n", rep + 1, st.repeat,
                 double(mempool_bench_now_ns() - t0) / 1e9);
  }
  report(results, st, s);
  m.cached = {};
  m.uncached = {};
  m.rt.reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Settings st = parse_args(argc, argv);
  return mpod_bench::run_interruptible("mpod-bench-mempool", "child stopped, files removed", [&] { return run(st); });
}
