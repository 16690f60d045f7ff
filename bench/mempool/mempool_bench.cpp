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
// enough free, plain memory for both otherwise. Each measurement is repeated
// R times with mpod and DPDK taking turns to go first; the table keeps each
// side's best run (on a shared 2-core machine the slower runs measure the
// neighbours, not the pool) and every run is listed under it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mempool_bench_shared.h"
#include "mpod/mempool.hpp"
#include "mpod/runtime.hpp"

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kDefaultObjects = 16'000'000;  // per thread and row
constexpr uint64_t kQuickObjects = 1'000'000;
constexpr int kDefaultRepeat = 5;
constexpr uint64_t kMemoryMb = 16;             // each side: 8 hugepages of 2 MB
constexpr long kHugepagesNeeded = 2 * 8 + 8;   // mpod's runtime and DPDK's child are up at once, plus slack

volatile sig_atomic_t g_interrupted = 0;
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

struct Settings {
  uint64_t objects = kDefaultObjects;
  int repeat = kDefaultRepeat;
};

// Where this run lives, removed on the way out (also after an error or ^C).
struct Scratch {
  std::string bin;          // directory of this program and dpdk-mempool-bench
  std::string mpod_dir;     // mpod's runtime dir (a fresh temporary one)
  std::string huge_dir;     // hugetlbfs mount both sides use; empty: no hugepages
  std::string dpdk_prefix;  // DPDK's --file-prefix, unique to this run
  bool have_dpdk = false;

  ~Scratch() {
    std::error_code ec;
    if (!mpod_dir.empty()) fs::remove_all(mpod_dir, ec);
    if (dpdk_prefix.empty()) return;
    // DPDK's runtime dir: /var/run/dpdk/<prefix> for root, else under $XDG_RUNTIME_DIR or /tmp.
    const char* bases[] = {"/var/run", getenv("XDG_RUNTIME_DIR"), "/tmp"};
    for (const char* base : bases)
      if (base) fs::remove_all(fs::path(base) / "dpdk" / dpdk_prefix, ec);
    if (!huge_dir.empty())  // page files DPDK may leave behind: <prefix>map_N
      for (auto& f : fs::directory_iterator(huge_dir, ec))
        if (f.path().filename().string().starts_with(dpdk_prefix + "map_")) fs::remove(f.path(), ec);
  }
};

// ---- the DPDK child ----

// dpdk-mempool-bench with its stdout captured (stderr passes through). Killed
// and reaped by the destructor if still running, and killed by the kernel if
// this process dies (PR_SET_PDEATHSIG).
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { kill_now(); }

  void start(std::vector<std::string> argv) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe: " + std::string(strerror(errno)));
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {  // only async-signal-safe calls until exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(p[1], STDOUT_FILENO);
      execv(args[0], args.data());
      _exit(127);
    }
    close(p[1]);
    out_ = p[0];
    if (pid_ < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
  }

  // Reads stdout to its end, then reaps. True if it did so in time and exited with 0.
  bool finish(double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      if (g_interrupted) throw Interrupted();
      if (std::chrono::steady_clock::now() > deadline) {
        kill_now();
        return false;
      }
      pollfd pfd{out_, POLLIN, 0};
      if (poll(&pfd, 1, 1000) <= 0) continue;  // rare wake-ups: each one may preempt a measured thread
      char buf[4096];
      const ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) break;
      text_.append(buf, static_cast<size_t>(n));
    }
    int st = 0;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }

  const std::string& output() const { return text_; }

 private:
  void kill_now() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    if (out_ >= 0) close(out_);
    out_ = -1;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  std::string text_;
};

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

Rows dpdk_rows(const Scratch& s, uint64_t objects) {
  std::vector<std::string> a = {s.bin + "/dpdk-mempool-bench", std::to_string(objects), "--proc-type=primary",
                                "--file-prefix=" + s.dpdk_prefix, "-l", "0-1", "--no-pci", "--no-telemetry",
                                "--log-level=lib.eal:error", "-m", std::to_string(kMemoryMb)};
  if (s.huge_dir.empty()) a.push_back("--no-huge");
  else a.push_back("--huge-dir=" + s.huge_dir);
  Child c;
  c.start(a);
  // 30 s to start, then 1 us per object and row: about 20x the slowest row seen.
  const bool ok = c.finish(30 + 1e-6 * double(objects) * 2 * MEMPOOL_BENCH_CASES);
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
  mpod::Options o;
  o.proc_type = mpod::ProcType::primary;
  o.file_prefix = "mempoolbench";
  o.runtime_dir = s.mpod_dir;
  o.memory_mb = kMemoryMb;
  o.huge_dir = s.huge_dir;
  o.no_huge = s.huge_dir.empty();
  MpodSide m;
  m.rt = mpod::Runtime::start(o);
  m.cached = mpod::Mempool::create(*m.rt, "bench_c256", MEMPOOL_BENCH_OBJECTS, MEMPOOL_BENCH_ELT_SIZE,
                                   {MEMPOOL_BENCH_CACHE, {}});
  m.uncached = mpod::Mempool::create(*m.rt, "bench_c0", MEMPOOL_BENCH_OBJECTS, MEMPOOL_BENCH_ELT_SIZE, {0, {}});
  return m;
}

// Thread t on CPU t, as EAL places lcores 0 and 1.
Rows mpod_rows(MpodSide& m, uint64_t objects) {
  Rows rows;
  for (const mempool_bench_case& c : mempool_bench_cases) {
    if (g_interrupted) throw Interrupted();
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
    rows[name] = double(ns) / double(mempool_bench_iterations(objects) * MEMPOOL_BENCH_KEEP * c.threads);
  }
  for (mpod::Mempool* p : {&m.cached, &m.uncached})
    if (p->available() != MEMPOOL_BENCH_OBJECTS)
      throw std::runtime_error("mpod: " + std::to_string(p->available()) + " objects of " +
                               std::to_string(MEMPOOL_BENCH_OBJECTS) + " free in '" + p->name() + "' after the rows");
  return rows;
}

// ---- the run ----

struct Samples {
  std::vector<double> mpod, dpdk;  // ns per object, one per run
};
using Results = std::map<std::string, Samples>;

double best(const std::vector<double>& runs) {
  return runs.empty() ? std::numeric_limits<double>::infinity() : *std::min_element(runs.begin(), runs.end());
}

std::string fmt(double v, int decimals) {
  if (!std::isfinite(v)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string list_runs(const std::vector<double>& runs) {
  std::string out;
  for (double v : runs) out += (out.empty() ? "" : " ") + fmt(v, 2);
  return out.empty() ? "-" : out;
}

void print_table(const std::vector<std::vector<std::string>>& rows, size_t text_cols) {
  std::vector<size_t> w(rows[0].size(), 0);
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string out = "|";
    for (size_t i = 0; i < r.size(); ++i) {
      const size_t pad = w[i] - r[i].size();
      out += " " + (i < text_cols ? r[i] + std::string(pad, ' ') : std::string(pad, ' ') + r[i]) + " |";
    }
    std::puts(out.c_str());
  };
  line(rows[0]);
  std::string sep = "|";
  for (size_t i = 0; i < w.size(); ++i)
    sep += (i < text_cols ? ":" : "-") + std::string(w[i], '-') + (i < text_cols ? "-|" : ":|");
  std::puts(sep.c_str());
  for (size_t i = 1; i < rows.size(); ++i) line(rows[i]);
}

void report(const Results& results, const Settings& st, const Scratch& s) {
  std::printf("Mempool: mpod beside DPDK 22.11 rte_mempool, same run; pools of %u objects of %u bytes; each thread "
              "takes %u objects in calls of <bulk> and puts them back, %llu objects per thread and row; %s.\n",
              MEMPOOL_BENCH_OBJECTS, MEMPOOL_BENCH_ELT_SIZE, MEMPOOL_BENCH_KEEP, (unsigned long long)st.objects,
              s.huge_dir.empty() ? "no hugepages (plain memory)" : ("hugepages in " + s.huge_dir).c_str());
  std::printf("ns/obj = one get + one put of one object, mean over the threads; best of %d runs (mpod and DPDK taking "
              "turns to go first).\n",
              st.repeat);
  std::printf("mpod threads: std::threads pinned to CPU 0 (and 1); DPDK threads: EAL lcores 0 (and 1), -l 0-1.\n");
  std::printf("ratio = DPDK ns/obj / mpod ns/obj: above 1, mpod is faster.\n\n");
  std::vector<std::vector<std::string>> t = {{"cache", "bulk", "threads", "mpod ns/obj", "DPDK ns/obj", "ratio"}};
  std::vector<std::string> all;
  for (const mempool_bench_case& c : mempool_bench_cases) {
    char name[64];
    mempool_bench_row_name(name, sizeof name, c);
    auto it = results.find(name);
    const Samples runs = it == results.end() ? Samples{} : it->second;
    const double m = best(runs.mpod), d = best(runs.dpdk);
    t.push_back({c.cache ? std::to_string(c.cache) : "none", std::to_string(c.bulk), std::to_string(c.threads),
                 fmt(m, 2), fmt(d, 2), fmt(d / m, 2)});
    all.push_back("  " + std::string(name) + ": mpod " + list_runs(runs.mpod) + "; DPDK " + list_runs(runs.dpdk));
  }
  print_table(t, 3);
  std::printf("\nEvery run, ns/obj in run order (row c<cache>-b<bulk>-t<threads>):\n");
  for (auto& line : all) std::puts(line.c_str());
  if (!s.have_dpdk)
    std::printf("\nDPDK comparison skipped: built without libdpdk-dev (apt-get install libdpdk-dev, rebuild)\n");
}

// A hugetlbfs mount of 2 MB pages with enough free pages, or "".
std::string pick_huge_dir() {
  std::ifstream meminfo("/proc/meminfo");
  long free_pages = 0;
  for (std::string key; meminfo >> key;) {
    if (key == "HugePages_Free:") meminfo >> free_pages;
    meminfo.ignore(256, '\n');
  }
  if (free_pages < kHugepagesNeeded) return "";
  std::ifstream mounts("/proc/mounts");
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream f(line);
    std::string dev, dir, type, opts;
    f >> dev >> dir >> type >> opts;
    if (type == "hugetlbfs" && (opts.find("pagesize=2M") != std::string::npos || opts.find("pagesize") == std::string::npos))
      return dir;
  }
  return "";
}

Settings parse_args(int argc, char** argv) {
  Settings st;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.starts_with("--objects=")) st.objects = std::strtoull(a.c_str() + 10, nullptr, 10);
    else if (a.starts_with("--repeat=")) st.repeat = std::atoi(a.c_str() + 9);
    else if (a == "--quick") st.objects = kQuickObjects, st.repeat = 1;
    else {
      std::fprintf(stderr, "usage: mpod-bench-mempool [--objects=N per thread and row (default %llu)] "
                           "[--repeat=R (default %d)] [--quick]\n",
                   (unsigned long long)kDefaultObjects, kDefaultRepeat);
      std::exit(a == "--help" ? 0 : 2);
    }
  }
  st.objects = std::max<uint64_t>(MEMPOOL_BENCH_KEEP, st.objects / MEMPOOL_BENCH_KEEP * MEMPOOL_BENCH_KEEP);
  st.repeat = std::max(1, st.repeat);
  return st;
}

void on_signal(int) { g_interrupted = 1; }

int run(const Settings& st) {
  if (std::thread::hardware_concurrency() < 2)
    throw std::runtime_error("the two-thread rows need CPUs 0 and 1");
  Scratch s;
  s.bin = fs::read_symlink("/proc/self/exe").parent_path();
  char tmpl[] = "/tmp/mpod-bench-mempool-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp: " + std::string(strerror(errno)));
  s.mpod_dir = tmpl;
  s.huge_dir = pick_huge_dir();
  s.dpdk_prefix = "mpodmempool" + std::to_string(getpid());
  s.have_dpdk = access((s.bin + "/dpdk-mempool-bench").c_str(), X_OK) == 0;
  MpodSide m = start_mpod(s);
  Results results;
  for (int rep = 0; rep < st.repeat; ++rep) {
    const bool dpdk_first = rep % 2 == 1;
    for (int turn = 0; turn < 2; ++turn) {
      const bool dpdk = (turn == 0) == dpdk_first;
      if (dpdk && !s.have_dpdk) continue;
      const uint64_t t0 = mempool_bench_now_ns();
      for (auto& [name, ns] : dpdk ? dpdk_rows(s, st.objects) : mpod_rows(m, st.objects))
        (dpdk ? results[name].dpdk : results[name].mpod).push_back(ns);
      std::fprintf(stderr, "mpod-bench-mempool: run %d/%d, %s: %.1f s\n", rep + 1, st.repeat, dpdk ? "DPDK" : "mpod",
                   double(mempool_bench_now_ns() - t0) / 1e9);
    }
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
  struct sigaction sa {};
  sa.sa_handler = on_signal;  // no SA_RESTART: a blocked poll returns and the run unwinds, cleaning up
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  try {
    return run(st);
  } catch (const Interrupted&) {
    std::fprintf(stderr, "mpod-bench-mempool: interrupted; child stopped, files removed\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpod-bench-mempool: %s\n", e.what());
    return 1;
  }
}
