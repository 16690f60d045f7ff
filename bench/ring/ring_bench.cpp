// mpod-bench-ring [--rounds=R] [--trial-elements=N] [--elements=N] [--repeat=R] [--quick]
//                 [--sections=local,pair,4p4c]:
// mpod's Ring beside DPDK 22.11's rte_ring in the same run, with a ratio per row.
//
// Rows (ring_bench_shared.h has the exact list; both sides run the same loops):
//  - local: one thread on CPU 0 enqueues a burst and dequeues it, per element
//    (DPDK's ring_perf_autotest), SP/SC and MP/MC, bursts 1, 8, 32;
//  - pair: a primary producer on CPU 0 creates the ring, a secondary consumer
//    on CPU 1 finds it by name; time from go to the last element / elements;
//  - 4p4c: 4 producer and 4 consumer threads of one process on CPUs 0-1
//    sharing one MP/MC ring with burst calls, in Mpps.
//
// This program is mpod's primary: it runs mpod's producer and its 4p4c
// threads itself, with mpod-ring-consumer as its secondary. DPDK's rows come
// from dpdk-ring-bench children.
//  - local and pair run as short trials, mpod's and DPDK's in alternation,
//    each compared with its neighbour (ring_bench_shared.h and
//    docs/benchmarking.md say why): on this VM the cost of a line crossing
//    between the two vCPUs changes 2-5x from one moment to the next, so
//    separate runs of each side measured the machine as much as the rings.
//  - 4p4c is repeated R times, mpod and DPDK taking turns to go first; each
//    row shows each side's best and median run and all its runs together
//    (with 8 threads on 2 CPUs runs are either fast or stalled by a
//    preempted claimer, and how often they stall is the point).
// Both rings hold 4095 elements in 4096 slots; both sides use hugepages when
// there are enough.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
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
#include "mpod/runtime.hpp"
#include "mpod_ring_ops.hpp"

namespace {

using namespace mpod_bench;

// 4p4c rows: elements per run per side. At 4 M a run of mpod's lasted
// 10-40 ms, a few scheduler slices, and a DPDK run that no preemption
// happened to hit now and then moved 100-230 Mpps; the row is about runs
// that meet preemption, so each lasts long enough to meet it (mpod's
// 100-500 ms; DPDK's stall until the 5 s limit).
constexpr uint64_t kDefaultElements = 40'000'000;
constexpr uint64_t kQuickElements = 256'000;
constexpr int kDefaultRepeat = 5;
// One-thread and two-process rows: rounds of trials, each trial this many
// elements (under a millisecond to tens of them: far shorter than the
// machine's changes of state).
constexpr uint64_t kDefaultRounds = 40;
constexpr uint64_t kDefaultTrialElements = 262'144;
constexpr uint64_t kQuickRounds = 3;
constexpr uint64_t kQuickTrialElements = 32'768;
constexpr uint64_t kMemoryMb = 16;       // each side's primary: 8 hugepages of 2 MB
constexpr long kHugepagesNeeded = 2 * 8 + 4;  // mpod's and DPDK's primaries are up at once, plus slack

// DPDK's 4p4c ring: the sync modes --dpdk-mpmc-sync names, each with the
// dpdk-ring-bench mode that runs it and how the report names it.
struct DpdkMpmcSync {
  const char* option;  // --dpdk-mpmc-sync=<option>
  const char* mode;    // dpdk-ring-bench's first argument
  const char* label;   // the table's sync column
  const char* ring;    // the line above the table
};
constexpr DpdkMpmcSync kDpdkMpmcSyncs[] = {
    {"mt", "mpmc", "MP/MC", "rte_ring_create's default MP/MC sync, rte_ring_mp_enqueue_burst/mc_dequeue_burst"},
    {"rts", "mpmc-rts", "MP/MC, DPDK RTS",
     "RTS sync (RING_F_MP_RTS_ENQ | RING_F_MC_RTS_DEQ), rte_ring_enqueue/dequeue_burst"},
    {"hts", "mpmc-hts", "MP/MC, DPDK HTS",
     "HTS sync (RING_F_MP_HTS_ENQ | RING_F_MC_HTS_DEQ), rte_ring_enqueue/dequeue_burst"},
};

struct Settings {
  uint64_t elements = kDefaultElements;
  int repeat = kDefaultRepeat;
  std::string sections = "local,pair,4p4c";  // which groups of rows to run
  uint64_t rounds = kDefaultRounds;            // local and pair rows: trials per side and row
  uint64_t trial_elements = kDefaultTrialElements;
  bool mpod_only = false;  // skip DPDK's side (quicker A/B runs of two mpod builds)
  // DPDK's 4p4c ring: rte_ring_create's default, or the RTS or HTS sync
  // modes DPDK offers for overcommitted cores.
  const DpdkMpmcSync* dpdk_sync = &kDpdkMpmcSyncs[0];
};

bool wants(const Settings& st, const char* section) {
  return ("," + st.sections + ",").find(std::string(",") + section + ",") != std::string::npos;
}

// ---- children's rows ----

// One row's figure from one run.
struct Measured {
  double ns_per_elem;
  bool stopped;  // hit the time limit of the 4p4c rows: a throughput over what it moved
  double elements = 0, elapsed_ns = 0;  // what it moved in how long
};
using Rows = std::map<std::string, Measured>;

// The "row name=X ns_per_elem=Y ... stopped=Z" lines of a child's output.
Rows parse_rows(const std::string& out) {
  Rows rows;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("row ")) continue;
    std::istringstream words(line.substr(4));
    std::string name;
    Measured m{0, false};
    for (std::string w; words >> w;) {
      if (w.starts_with("name=")) name = w.substr(5);
      if (w.starts_with("ns_per_elem=")) m.ns_per_elem = std::strtod(w.c_str() + 12, nullptr);
      if (w.starts_with("elements=")) m.elements = std::strtod(w.c_str() + 9, nullptr);
      if (w.starts_with("elapsed_ns=")) m.elapsed_ns = std::strtod(w.c_str() + 11, nullptr);
      if (w == "stopped=1") m.stopped = true;
    }
    if (!name.empty() && m.ns_per_elem > 0) rows[name] = m;
  }
  return rows;
}

// How long a 4p4c child may take before it is killed: 30 s to start, then
// the rows' own time limit plus 5 s each.
double mpmc_timeout_s() { return 30 + RING_BENCH_MPMC_CASES * (RING_BENCH_MPMC_LIMIT_S + 5); }

// A failed child costs its rows, not the whole run: say so and keep what it printed.
Rows rows_of(Child& c, bool ok, const std::string& what) {
  if (!ok) std::fprintf(stderr, "mpod-bench-ring: %s failed or timed out; its rows are missing. It printed:\n%s\n",
                        what.c_str(), c.output().c_str());
  return parse_rows(c.output());
}

// ---- mpod's side ----


// Runs fn on a new thread limited to CPUs first..last, and waits for it.
void on_cpus(int first, int last, const std::function<void()>& fn) {
  std::exception_ptr err;
  std::thread t([&] {
    ring_bench_pin_thread(first, last);
    try {
      fn();
    } catch (...) {
      err = std::current_exception();
    }
  });
  t.join();
  if (err) std::rethrow_exception(err);
}

// `arg`: ELEMENTS (mpmc) or the trials' file (producer, consumer).
std::vector<std::string> dpdk_argv(const Scratch& s, const char* mode, const std::string& arg, bool primary, int lcore) {
  std::vector<std::string> a = {s.bin + "/dpdk-ring-bench", mode, arg,
                                primary ? "--proc-type=primary" : "--proc-type=secondary", "-l", std::to_string(lcore)};
  const std::vector<std::string> eal = s.dpdk_eal_options(s.dpdk_prefix);
  a.insert(a.end(), eal.begin(), eal.end());
  if (primary) a.insert(a.end(), {"-m", std::to_string(kMemoryMb)});
  return a;
}

// Each row's trial times (ns per element), per side, in round order: entry
// r of both sides ran next to each other in time. Rows as in
// ring_bench_shared.h: one-thread rows, then two-process rows.
struct Trials {
  std::vector<double> ns[2][RING_BENCH_ROWS];  // [side][row]
  // Two-process rows, per trial: calls that found the ring full (producer)
  // and empty (consumer), per call that moved a burst.
  std::vector<double> full[2][RING_BENCH_ROWS], empty[2][RING_BENCH_ROWS];
  uint32_t rounds = 0;
  uint64_t elements = 0;
  bool dpdk = false;
};

// The trials' file: created here, mapped by all four processes.
class TrialsFile {
 public:
  TrialsFile(const std::string& path, uint32_t rounds, uint64_t elements, bool dpdk_runs, uint32_t wanted) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, sizeof(ring_bench_trials)) != 0)
      throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
    ::close(fd);
    p_ = ring_bench_map_trials(path.c_str());
    if (!p_) throw std::runtime_error("cannot map " + path);
    p_->turn = RING_BENCH_TURN_PENDING;
    p_->trials = 2 * RING_BENCH_ROWS * rounds;
    p_->rounds = rounds;
    p_->elements = elements;
    p_->dpdk_runs = dpdk_runs;
    p_->wanted = wanted;
  }
  ~TrialsFile() {
    ::munmap(p_, sizeof(ring_bench_trials));
    ::unlink(path_.c_str());
  }
  TrialsFile(const TrialsFile&) = delete;
  TrialsFile& operator=(const TrialsFile&) = delete;
  ring_bench_trials* get() const { return p_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  ring_bench_trials* p_ = nullptr;
};

// The one-thread and two-process rows: mpod's producer (a thread of this
// primary, CPU 0) and mpod-ring-consumer (CPU 1), DPDK's producer and
// consumer (dpdk-ring-bench children, CPUs 0 and 1), all alive at once,
// running trials in turn.
Trials run_trials(mpod::Runtime& rt, const Scratch& s, const Settings& st, uint32_t wanted) {
  const bool dpdk = s.have_dpdk && !s.huge_dir.empty();  // DPDK secondaries need hugepages
  TrialsFile file(s.mpod_dir + "/trials", uint32_t(st.rounds), st.trial_elements, dpdk, wanted);
  ring_bench_trials* p = file.get();
  // 1 us per element (about 10x the slowest trial seen) and 30 s to start.
  const auto deadline = deadline_after(30 + 1e-6 * double(st.trial_elements) * p->trials);
  std::vector<std::string> argv = {s.bin + "/mpod-ring-consumer", "--proc-type=secondary",
                                   "--file-prefix=" + rt.options().file_prefix, "--runtime-dir=" + s.mpod_dir};
  if (s.huge_dir.empty()) argv.push_back("--no-huge");
  argv.insert(argv.end(), {"--", file.path()});
  Child consumer, dpdk_producer, dpdk_consumer;
  std::vector<Child*> children = {&consumer};
  auto ready = [&](Child& c, const char* what) {
    if (c.read_until("READY", 1, deadline_after(60)) != ReadEnd::found)
      throw std::runtime_error(std::string(what) + " did not start; it printed:\n" + c.output());
  };
  consumer.start(argv);
  ready(consumer, "mpod-ring-consumer");
  if (dpdk) {
    dpdk_producer.start(dpdk_argv(s, "producer", file.path(), true, RING_BENCH_PRODUCER_CPU));
    ready(dpdk_producer, "dpdk-ring-bench producer (primary)");
    dpdk_consumer.start(dpdk_argv(s, "consumer", file.path(), false, RING_BENCH_CONSUMER_CPU));
    ready(dpdk_consumer, "dpdk-ring-bench consumer (secondary)");
    children.push_back(&dpdk_producer);
    children.push_back(&dpdk_consumer);
  }
  mpod::Ring ring = mpod::Ring::lookup(rt, ring_bench::kPairRing);
  bool produced = false;
  std::thread producer([&] {
    ring_bench_pin_thread(RING_BENCH_PRODUCER_CPU, RING_BENCH_PRODUCER_CPU);
    produced = ring_bench_run_producer(p, RING_BENCH_SIDE_MPOD, &ring, ring_bench::produce_trial, ring_bench::local_trial) != 0;
  });
  ring_bench_set_turn(p, ring_bench_next_trial(p, 0));
  // Sleep through the trials, waking rarely (a wake-up may preempt a
  // measured process): stop them if a child dies, time runs out, or ^C.
  std::string failure;
  try {
    while (__atomic_load_n(&p->turn, __ATOMIC_ACQUIRE) != p->trials && failure.empty()) {
      throw_if_interrupted();
      for (Child* c : children)
        if (c->failed()) failure = c->name() + " failed; it printed:\n" + c->output();
      if (ring_bench_aborted(p)) failure = "a trial failed (see above)";
      if (Clock::now() > deadline) failure = "the trials did not finish in time";
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  } catch (...) {
    ring_bench_abort_trials(p);
    producer.join();
    throw;
  }
  if (!failure.empty()) ring_bench_abort_trials(p);
  producer.join();
  for (Child* c : children)
    if (c->finish(deadline_after(10)) != 0 && failure.empty()) failure = c->name() + " failed; it printed:\n" + c->output();
  if (failure.empty() && !produced) failure = "mpod's producer was aborted";
  if (!failure.empty()) throw std::runtime_error("one-thread and two-process rows: " + failure);
  Trials out;
  out.rounds = p->rounds;
  out.elements = p->elements;
  out.dpdk = dpdk;
  for (uint32_t t = 0; t < p->trials; ++t) {
    if (!ring_bench_trial_runs(p, t)) continue;
    int row, side;
    ring_bench_trial_of(t, &row, &side);
    out.ns[side][row].push_back(double(p->elapsed_ns[t]) / double(p->elements));
    const double calls = double(p->elements / ring_bench_row_case(row).burst);
    out.full[side][row].push_back(double(p->full_polls[t]) / calls);
    out.empty[side][row].push_back(double(p->empty_polls[t]) / calls);
  }
  return out;
}

uint64_t mpmc_produce(ring_bench_worker* w) {
  mpod::Ring r = *static_cast<mpod::Ring*>(w->ring);
  uint64_t sent = 0;
  while (sent < w->share && !ring_bench_mpmc_stopped(w)) {
    const uint64_t left = w->share - sent;
    const unsigned k = r.enqueue_burst(ring_bench::g_objs.p, left < w->burst ? unsigned(left) : w->burst, mpod::Sync::multi);
    if (k == 0) ring_bench_relax();
    sent += k;
  }
  return sent;
}

uint64_t mpmc_consume(ring_bench_worker* w) {
  mpod::Ring r = *static_cast<mpod::Ring*>(w->ring);
  void* out[RING_BENCH_MAX_BURST];
  uint64_t got = 0;
  for (;;) {
    const bool last = ring_bench_mpmc_producers_finished(w);
    const unsigned k = r.dequeue_burst(out, w->burst, mpod::Sync::multi);
    ring_bench_keep(out);
    got += k;
    if (k > 0) continue;
    if (last) return got;
    ring_bench_relax();
  }
}

// Runs on its own thread: ring_bench_mpmc_run pins the calling thread to CPUs 0-1.
Rows mpod_mpmc(mpod::Ring& ring, uint64_t elements) {
  Rows rows;
  on_cpus(0, 1, [&] {
    for (unsigned burst : ring_bench_mpmc_bursts) {
      ring_bench_mpmc_result res;
      if (ring_bench_mpmc_run(&ring, burst, elements, mpmc_produce, mpmc_consume, &res) != 0)
        throw std::runtime_error("mpod: the consumers did not get every element exactly once");
      char name[64];
      ring_bench_row_name(name, sizeof name, "4p4c", 1, burst);
      rows[name] = {double(res.elapsed_ns) / double(res.moved), res.stopped != 0, double(res.moved), double(res.elapsed_ns)};
    }
  });
  return rows;
}

// ---- DPDK's side: dpdk-ring-bench children ----

// local and mpmc: one process.
Rows dpdk_single(const Scratch& s, const char* mode, uint64_t elements, double timeout) {
  Child c;
  c.start(dpdk_argv(s, mode, std::to_string(elements), true, RING_BENCH_PRODUCER_CPU));
  const bool ok = c.finish(deadline_after(timeout)) == 0;
  return rows_of(c, ok, std::string("dpdk-ring-bench ") + mode);
}

// ---- the run ----

// Every run's figure of one row, per side.
struct Samples {
  std::vector<Measured> mpod, dpdk;
};
using Results = std::map<std::string, Samples>;

void record(Results& results, const Rows& rows, bool dpdk) {
  for (auto& [name, m] : rows) (dpdk ? results[name].dpdk : results[name].mpod).push_back(m);
}

// Best (lowest time) or median of a row's runs; infinite if it never ran.
Measured summarise(std::vector<Measured> runs, bool median) {
  if (runs.empty()) return {std::numeric_limits<double>::infinity(), false};
  std::sort(runs.begin(), runs.end(), [](const Measured& a, const Measured& b) { return a.ns_per_elem < b.ns_per_elem; });
  return median ? runs[(runs.size() - 1) / 2] : runs.front();
}

struct MpodSide {
  std::unique_ptr<mpod::Runtime> rt;
  mpod::Ring mpmc;
};

MpodSide start_mpod(const Scratch& s) {
  MpodSide m;
  m.rt = mpod::Runtime::start(primary_options(s, "ringbench", kMemoryMb));
  m.mpmc = mpod::Ring::create(*m.rt, "bench_mpmc", RING_BENCH_CAPACITY);
  mpod::Ring::create(*m.rt, ring_bench::kPairRing, RING_BENCH_CAPACITY);
  return m;
}

// One repetition of the 4p4c rows, mpod and DPDK taking turns to go first
// (the other rows run as interleaved trials: run_trials).
void run_once(MpodSide& m, const Scratch& s, const Settings& st, int rep, Results& results) {
  struct Section {
    const char* name;  // as --sections spells it
    std::function<Rows()> mpod, dpdk;
    bool dpdk_runs;
  };
  const uint64_t n = st.elements;
  const Section sections[] = {
      {"4p4c", [&] { return mpod_mpmc(m.mpmc, n); }, [&] { return dpdk_single(s, st.dpdk_sync->mode, n, mpmc_timeout_s()); },
       s.have_dpdk},
  };
  const bool dpdk_first = rep % 2 == 1;
  for (const Section& sec : sections) {
    if (!wants(st, sec.name)) continue;
    for (int turn = 0; turn < 2; ++turn) {
      throw_if_interrupted();
      const bool dpdk = (turn == 0) == dpdk_first;
      if (dpdk && !sec.dpdk_runs) continue;
      const uint64_t t0 = ring_bench_now_ns();
      record(results, dpdk ? sec.dpdk() : sec.mpod(), dpdk);
      std::fprintf(stderr, "mpod-bench-ring: run %d/%d, %s, %s: %.1f s\n", rep + 1, st.repeat, sec.name,
                   dpdk ? "DPDK" : "mpod", (ring_bench_now_ns() - t0) / 1e9);
    }
  }
}

// ---- output ----

// "20.1 18.3 0.0*": every run of a row in run order, in Mpps or ns/elem.
std::string every_run(const std::vector<Measured>& runs, bool mpps) {
  std::string out;
  for (auto& m : runs)
    out += (out.empty() ? "" : " ") + fmt(mpps ? 1e3 / m.ns_per_elem : m.ns_per_elem, mpps ? 1 : 2) + (m.stopped ? "*" : "");
  return out.empty() ? "-" : out;
}

const char* skipped_why(const Settings& st) {
  return st.mpod_only ? "--mpod-only" : "built without libdpdk-dev (apt-get install libdpdk-dev, rebuild)";
}

// The trial rows: per row, each side's median trial and the median (and
// quartiles) of DPDK's time / mpod's time over the pairs of trials.
void report_trials(const Trials& tr, const Scratch& s, const Settings& st) {
  std::printf("One thread (CPU 0) and two processes (producer, primary, on CPU 0 -> consumer, secondary, on CPU 1): %u "
              "rounds of trials of %llu elements per row, mpod's and DPDK's in alternation (the side going first "
              "alternating), all four processes up throughout and the idle side asleep; rings of 4095 pointers (4096 "
              "slots); %s. ratio = DPDK's trial time / the adjacent mpod trial's time: median over the pairs "
              "(quartiles in brackets); above 1, mpod is faster.\n\n",
              tr.rounds, (unsigned long long)tr.elements, memory_description(s.huge_dir).c_str());
  std::vector<std::vector<std::string>> t = {{"test", "sync", "burst", "mpod median ns/elem", "DPDK median ns/elem",
                                              "DPDK/mpod per pair", "pairs mpod faster", "full/empty polls per call, mpod",
                                              "DPDK"}};
  std::vector<std::string> all;
  for (int row = 0; row < RING_BENCH_ROWS; ++row) {
    if (tr.ns[0][row].empty()) continue;  // not wanted
    const ring_bench_case rc = ring_bench_row_case(row);
    const bool pair = ring_bench_row_is_pair(row);
    const PairedSummary ps = tr.dpdk ? summarise_pairs(tr.ns[0][row], tr.ns[1][row]) : PairedSummary{};
    auto polls = [&](int side) {
      return fmt(quantile(tr.full[side][row], 0.5), 2) + " / " + fmt(quantile(tr.empty[side][row], 0.5), 2);
    };
    t.push_back({pair ? "2 processes, CPU 0 -> CPU 1" : "1 thread, enqueue+dequeue", rc.multi ? "MP/MC" : "SP/SC",
                 std::to_string(rc.burst), fmt(quantile(tr.ns[0][row], 0.5), 2), tr.dpdk ? fmt(ps.b_median, 2) : "-",
                 ratio_with_range(ps, 2), tr.dpdk ? std::to_string(ps.b_above) + " of " + std::to_string(ps.pairs) : "-",
                 pair ? polls(0) : "-", pair && tr.dpdk ? polls(1) : "-"});
    char name[64];
    ring_bench_row_name(name, sizeof name, pair ? "pair" : "local", rc.multi, rc.burst);
    std::string line = std::string("  ") + name + ":";
    for (size_t r = 0; r < tr.ns[0][row].size(); ++r)
      line += " " + fmt(tr.ns[0][row][r], 2) + (tr.dpdk ? "/" + fmt(tr.ns[1][row][r], 2) : "");
    all.push_back(line);
  }
  print_table(t, 3);
  std::printf("\nEvery pair of trials, in run order (ns/elem, mpod/DPDK):\n");
  for (auto& line : all) std::puts(line.c_str());
  if (!s.have_dpdk) std::printf("\nDPDK comparison skipped: %s\n", skipped_why(st));
  else if (s.huge_dir.empty())
    std::printf("\nNo hugepages (scripts/hugepages.sh sets them up): DPDK's trials skipped (its secondary needs them)\n");
  std::printf("\n");
}

void report(const Results& results, const Settings& st, const Scratch& s) {
  std::printf("4 producer and 4 consumer threads of one process on CPUs 0-1, one MP/MC ring, burst calls: %d runs of %llu "
              "elements per row (mpod and DPDK taking turns to go first); rings of 4095 pointers (4096 slots); %s.\n",
              st.repeat, (unsigned long long)st.elements,
              memory_description(s.huge_dir).c_str());
  std::printf("Runs are bimodal: a thread preempted between claiming and publishing may stall its side for a time "
              "slice or more, or no thread is preempted at a bad moment and the run flies. best: each side's best run; "
              "median: its median run; all runs: everything it moved / all the time it took.\n");
  std::printf("DPDK's ring: %s.\n", st.dpdk_sync->ring);
  std::printf("ratio = mpod Mpps / DPDK Mpps: above 1, mpod is faster.\n\n");
  std::vector<std::vector<std::string>> t = {{"test", "sync", "burst", "unit", "mpod best", "DPDK best", "ratio",
                                              "mpod median", "DPDK median", "ratio", "mpod all runs", "DPDK all runs",
                                              "ratio"}};
  // Mpps over every run together.
  auto overall = [](const std::vector<Measured>& runs) {
    double n = 0, ns = 0;
    for (auto& m : runs) n += m.elements, ns += m.elapsed_ns;
    return ns > 0 ? 1e3 * n / ns : std::numeric_limits<double>::quiet_NaN();
  };
  // ns per element, or Mpps for throughput rows; "*": stopped at the time limit.
  auto cell = [&](const Measured& m, bool mpps) {
    if (!std::isfinite(m.ns_per_elem)) return std::string("-");  // not measured
    return fmt(mpps ? 1e3 / m.ns_per_elem : m.ns_per_elem, mpps ? 1 : 2) + (m.stopped ? "*" : "");
  };
  std::vector<std::string> all_runs;
  auto add = [&](const char* label, const char* section, int multi, unsigned burst, bool mpps) {
    char name[64];
    ring_bench_row_name(name, sizeof name, section, multi, burst);
    auto it = results.find(name);
    const Samples runs = it == results.end() ? Samples{} : it->second;
    const Measured m = summarise(runs.mpod, false), d = summarise(runs.dpdk, false);
    const Measured mm = summarise(runs.mpod, true), dm = summarise(runs.dpdk, true);
    const double om = overall(runs.mpod), od = overall(runs.dpdk);
    t.push_back({label, multi ? st.dpdk_sync->label : "SP/SC", std::to_string(burst), mpps ? "Mpps" : "ns/elem", cell(m, mpps),
                 cell(d, mpps), fmt(d.ns_per_elem / m.ns_per_elem, 2), cell(mm, mpps), cell(dm, mpps),
                 fmt(dm.ns_per_elem / mm.ns_per_elem, 2), fmt(om, 1), fmt(od, 1), fmt(om / od, 2)});
    if (!runs.mpod.empty() || !runs.dpdk.empty())
      all_runs.push_back(std::string("  ") + name + ": mpod " + every_run(runs.mpod, mpps) + "; DPDK " +
                         every_run(runs.dpdk, mpps));
  };
  for (unsigned burst : ring_bench_mpmc_bursts) add("4 prod + 4 cons threads, CPUs 0-1", "4p4c", 1, burst, true);
  print_table(t, 2);
  std::printf("\nEvery run, in run order (ns/elem; 4p4c rows in Mpps, *: stopped at the %.0f s limit, Mpps over what it "
              "moved):\n",
              double(RING_BENCH_MPMC_LIMIT_S));
  for (auto& line : all_runs) std::puts(line.c_str());
  if (!s.have_dpdk) std::printf("\nDPDK comparison skipped: %s\n", skipped_why(st));
  else if (s.huge_dir.empty()) std::printf("\nNo hugepages (scripts/hugepages.sh sets them up): plain memory for both\n");
}

Settings parse_args(int argc, char** argv) {
  Settings st;
  std::string sync = st.dpdk_sync->option;
  parse_options(argc, argv,
                {value_option("--elements=", st.elements), value_option("--repeat=", st.repeat),
                 value_option("--sections=", st.sections), value_option("--rounds=", st.rounds),
                 value_option("--trial-elements=", st.trial_elements),
                 value_option("--dpdk-mpmc-sync=", sync),
                 {"--mpod-only", [&](const std::string&) { st.mpod_only = true; }},
                 {"--quick", [&](const std::string&) {
                    st.elements = kQuickElements, st.repeat = 1;
                    st.rounds = kQuickRounds, st.trial_elements = kQuickTrialElements;
                  }}},
                [] {
                  std::fprintf(stderr,
                               "usage: mpod-bench-ring [--rounds=R (default %llu)] [--trial-elements=N (default %llu)]\n"
                               "                       [--elements=N (default %llu)] [--repeat=R (default %d)] [--quick]\n"
                               "                       [--sections=local,pair,4p4c (default: all)] [--mpod-only]\n"
                               "                       [--dpdk-mpmc-sync=mt|rts|hts (DPDK's 4p4c ring; default mt)]\n"
                               "  local, pair: --rounds rounds of interleaved trials of --trial-elements each; 4p4c: --repeat runs of --elements\n",
                               (unsigned long long)kDefaultRounds, (unsigned long long)kDefaultTrialElements,
                               (unsigned long long)kDefaultElements, kDefaultRepeat);
                });
  const auto known = std::find_if(std::begin(kDpdkMpmcSyncs), std::end(kDpdkMpmcSyncs),
                                  [&](const DpdkMpmcSync& d) { return sync == d.option; });
  if (known == std::end(kDpdkMpmcSyncs)) {
    std::fprintf(stderr, "mpod-bench-ring: --dpdk-mpmc-sync=%s: give mt, rts or hts\n", sync.c_str());
    std::exit(2);
  }
  st.dpdk_sync = known;
  // Every burst and each producer's share must divide the count.
  st.elements = std::max<uint64_t>(RING_BENCH_ELEM_GRAIN, st.elements / RING_BENCH_ELEM_GRAIN * RING_BENCH_ELEM_GRAIN);
  st.repeat = std::max(1, st.repeat);
  st.rounds = std::clamp<uint64_t>(st.rounds, 1, RING_BENCH_MAX_TRIALS / (2 * RING_BENCH_ROWS));
  st.trial_elements =
      std::max<uint64_t>(RING_BENCH_ELEM_GRAIN, st.trial_elements / RING_BENCH_ELEM_GRAIN * RING_BENCH_ELEM_GRAIN);
  return st;
}

int run(const Settings& st) {
  Scratch s("mpod-bench-ring", kHugepagesNeeded, "dpdk-ring-bench");
  s.dpdk_prefix = s.track_prefix("mpodring" + std::to_string(getpid()));
  if (st.mpod_only) s.have_dpdk = false;
  MpodSide m = start_mpod(s);
  const uint32_t wanted = (wants(st, "local") ? RING_BENCH_WANT_LOCAL : 0u) | (wants(st, "pair") ? RING_BENCH_WANT_PAIR : 0u);
  std::optional<Trials> trials;
  if (wanted) {
    const uint64_t t0 = ring_bench_now_ns();
    trials = run_trials(*m.rt, s, st, wanted);
    std::fprintf(stderr, "mpod-bench-ring: one-thread and two-process trials: %.1f s\n", (ring_bench_now_ns() - t0) / 1e9);
  }
  Results results;
  if (wants(st, "4p4c"))
    for (int rep = 0; rep < st.repeat; ++rep) run_once(m, s, st, rep, results);
  if (trials) report_trials(*trials, s, st);
  if (wants(st, "4p4c")) report(results, st, s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Settings st = parse_args(argc, argv);
  return mpod_bench::run_interruptible("mpod-bench-ring", "children stopped, files removed", [&] { return run(st); });
}
