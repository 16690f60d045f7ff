// mpod-bench-liveness [--n=64,256,1024] [--seconds=10] [--kills=20]
// [--timeout=120] [--dpdk-max-n=256] [--skip-dpdk]: what watching for peers'
// deaths costs, mpod beside DPDK 22.11 in the same run. For each N:
//
// 1. Idle CPU. A primary and N attached secondaries that do nothing (mpod:
//    `mpod serve` and mpod-liveness-peer, which starts mpod::Runtime as a
//    secondary, prints READY and blocks in sigwait; DPDK: mpod-dpdk-primary
//    as primary and as secondaries, rte_eal_init then sigwait). Once all are
//    READY and a second has passed, the CPU they use over --seconds: the sum
//    of utime+stime (every thread) of the primary and the N secondaries from
//    /proc/<pid>/stat, before and after, as % of one core; beside it the
//    whole machine's busy time from /proc/stat (everything but idle, iowait
//    and steal), which includes anything else running on the machine. This
//    kernel's utime/stime are rounded down to 10 ms ticks per process, so a
//    third figure sums the same processes' threads' run time in ns from
//    /proc/<pid>/task/*/schedstat.
// 2. Attach at once. The N secondaries are forked one after another as fast
//    as this program can, then run concurrently: time from just before the
//    first fork to the last secondary's READY (each prints its own
//    CLOCK_MONOTONIC time), and to this program having read all N READY lines.
//    Before each mpod row, the launch floor: N copies of mpod-liveness-peer
//    --launch-only started the same way, each printing READY before it
//    would start the runtime, so the attach time can be read against what
//    merely starting N processes of that binary costs here.
// 3. Crash-event latency, mpod only: DPDK has no event for a peer's death.
//    The first of the N secondaries is started with --subscribe and prints a
//    line per Channel::subscribe event (one of the N, so that N = 1024 fits a
//    full domain: a primary and 1024 secondaries). --kills times, with 20-70 ms between kills so
//    kills are not in step with any period of the code measured: SIGKILL an
//    idle secondary picked at random, CLOCK_MONOTONIC taken just before
//    kill(); latency = the subscriber's time for that id's event - the kill's.
//    Also whether the killed process's registration file
//    <runtime-dir>/<prefix>/procs/<id> is gone within 1 s of the kill.
//
// Every process runs in this program's PID namespace (the only layout where
// DPDK's multi-process works; mpod's the same for a fair comparison), on 2 MB
// hugepages when enough are free (both sides; DPDK's secondaries cannot
// attach without them, so DPDK is skipped when there are none and mpod runs
// --no-huge), 64 MB per primary. DPDK gets -l 0 --no-pci --no-telemetry
// (one lcore, no device scan, no telemetry thread). Children's stdout and
// stderr go to files (see fleet.hpp), read as inotify reports writes. As
// root this program runs at SCHED_FIFO priority 1 (children reset to
// SCHED_OTHER), so the load it measures cannot delay its forks, /proc reads
// and kills; it blocks between short steps.
// Waits are capped: a side that does not finish in time is reported as such.
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/hugepages.hpp"
#include "common/interrupt.hpp"
#include "common/options.hpp"
#include "common/paired.hpp"
#include "common/scratch.hpp"
#include "common/table.hpp"
#include "liveness/fleet.hpp"

namespace {

using namespace mpod_bench;

constexpr long kHugepagesNeeded = 40;  // one primary at a time: 64 MB, plus slack
constexpr int kMemoryMb = 64;
constexpr double kSettleS = 1.0;       // after the last READY, before the CPU window
constexpr double kPrimaryReadyS = 30;
constexpr double kEventTimeoutS = 10;  // per kill: longer counts as no event
constexpr uint64_t kReapWindowNs = 1'000'000'000;
constexpr int kKillGapMinMs = 20, kKillGapMaxMs = 70;
constexpr int kTargetN = 256, kTargetBigN = 1024;  // the N the absolute targets are set at

const double kNaN = std::nan("");

struct Settings {
  std::vector<int> ns = {64, 256, 1024};
  int seconds = 10;
  int kills = 20;
  int timeout = 120;  // seconds: N secondaries (or the subscriber) to be READY
  int dpdk_max_n = 256;
  bool skip_dpdk = false;
};

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

// Sleeps `seconds`, throwing Interrupted on ^C (the handler's signal ends nanosleep early).
void sleep_for(double seconds) {
  const uint64_t until = mono_ns() + uint64_t(seconds * 1e9);
  for (uint64_t now; (now = mono_ns()) < until;) {
    throw_if_interrupted();
    const uint64_t left = until - now;
    timespec ts{time_t(left / 1'000'000'000u), long(left % 1'000'000'000u)};
    nanosleep(&ts, nullptr);
  }
  throw_if_interrupted();
}

// utime + stime of every thread of a process, in clock ticks; -1 if it is gone.
long long cpu_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  const auto paren = line.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream f(line.substr(paren + 2));  // from field 3 (state) on
  std::string field;
  long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && f >> field; ++i) {
    if (i == 14) utime = std::atoll(field.c_str());
    if (i == 15) stime = std::atoll(field.c_str());
  }
  return utime + stime;
}

// Run time of every live thread of a process in ns (/proc/<pid>/task/*/schedstat,
// the scheduler's own clock: no tick rounding); -1 if it is gone.
long long run_ns(pid_t pid) {
  std::error_code ec;
  long long sum = 0;
  bool any = false;
  for (auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "schedstat");
    long long ns = 0;
    if (in >> ns) {
      sum += ns;
      any = true;
    }
  }
  return any ? sum : -1;
}

// The whole machine's busy clock ticks (user, nice, system, irq, softirq) from /proc/stat.
long long machine_busy_ticks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  return user + nice + system + irq + softirq;
}

double ticks_to_core_pct(long long ticks, uint64_t elapsed_ns) {
  return double(ticks) / double(sysconf(_SC_CLK_TCK)) / (double(elapsed_ns) / 1e9) * 100.0;
}

// The whole machine's busy time over `seconds`, % of one core.
double machine_pct_over(double seconds) {
  const long long b0 = machine_busy_ticks();
  const uint64_t t0 = mono_ns();
  sleep_for(seconds);
  return ticks_to_core_pct(machine_busy_ticks() - b0, mono_ns() - t0);
}

// Lines of `text` that start with `word` + ' ', from byte `from` on, whole lines only;
// advances `from` past the last whole line.
std::vector<std::vector<std::string>> lines_starting(const std::string& text, size_t& from, const std::string& word) {
  std::vector<std::vector<std::string>> out;
  for (size_t nl; (nl = text.find('\n', from)) != std::string::npos; from = nl + 1) {
    if (text.compare(from, word.size() + 1, word + " ") != 0) continue;
    std::istringstream f(text.substr(from, nl - from));
    std::vector<std::string> tokens;
    for (std::string t; f >> t;) tokens.push_back(t);
    out.push_back(tokens);
  }
  return out;
}

// ---- results ----

struct Attach {
  int n = 0, ready = 0, failed = 0;
  bool finished = false;  // every secondary READY
  double last_ms = kNaN, all_read_ms = kNaN;
};

struct Idle {
  bool measured = false;
  double procs_pct = kNaN, machine_pct = kNaN;
  double run_pct = kNaN;  // the same processes' run time from schedstat
  double start_ms = kNaN;  // mean run time of a secondary from exec to the window (attach, then idle or polling)
};

struct Crash {
  bool measured = false;
  int kills = 0, missed = 0, crashed = 0, exited = 0, reaped = 0;
  std::vector<double> latency_ms;
};

// The q-quantile of the latencies, the kills with no event counted as
// later than any (infinite): interpolated between order statistics like
// quantile(); infinite when it falls on or next to a missing event.
double latency_quantile(const Crash& c, double q) {
  std::vector<double> v = c.latency_ms;
  v.insert(v.end(), size_t(c.missed), INFINITY);
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const double at = q * double(v.size() - 1);
  const size_t lo = size_t(at), hi = std::min(lo + 1, v.size() - 1);
  if (!std::isfinite(v[lo]) || (at > double(lo) && !std::isfinite(v[hi]))) return INFINITY;
  return v[lo] + (v[hi] - v[lo]) * (at - double(lo));
}

struct Side {
  std::string not_run;  // why there is no figure at all ("" if it ran)
  std::string stopped;  // why the side stopped part-way ("" if it did not)
  Attach attach;
  Idle idle;
  Crash crash;
};

struct Row {
  int n = 0;
  Attach floor;  // the launch floor (launch_floor)
  Side mpod, dpdk;
};

// ---- one side at one N ----

std::string first_failure(Fleet& f, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i)
    if (!f.running(i) && f.status(i) != 0)
      return "exit status " + std::to_string(f.status(i)) + "; it printed:\n" + f.output(i);
  return "";
}

// Starts n children after those already in `fleet` (argv_of(0..n-1)), back
// to back, and waits until each printed "READY [<id>] <CLOCK_MONOTONIC ns>"
// or exited, or the --timeout passed. Times are from just before the first
// fork. The ids (when printed) go to (*ids)[1..n].
Attach start_at_once(Fleet& fleet, int n, const std::function<std::vector<std::string>(int)>& argv_of,
                     const Settings& st, std::vector<std::string>* ids) {
  Attach a;
  a.n = n;
  const size_t first = fleet.size();
  std::vector<uint64_t> ready_ns(size_t(n), 0);
  std::vector<size_t> parsed(size_t(n), 0);
  if (ids) ids->assign(size_t(n) + 1, "");
  const uint64_t t0 = mono_ns();
  const auto deadline = deadline_after(st.timeout);
  for (int i = 0; i < n; ++i) fleet.start(argv_of(i));
  uint64_t exits_checked = 0;
  auto done = [&] {
    for (size_t i = 0; i < size_t(n); ++i) {
      if (ready_ns[i] || fleet.output(first + i).size() == parsed[i]) continue;
      for (auto& t : lines_starting(fleet.output(first + i), parsed[i], "READY")) {
        ready_ns[i] = std::strtoull(t.back().c_str(), nullptr, 10);
        if (ids && t.size() == 3) (*ids)[i + 1] = t[1];
        ++a.ready;
      }
    }
    if (mono_ns() - exits_checked > 100'000'000) {  // exits: at most every 100 ms (a waitpid per child)
      exits_checked = mono_ns();
      a.failed = 0;
      for (size_t i = 0; i < size_t(n); ++i)
        if (!ready_ns[i] && !fleet.running(first + i)) ++a.failed;
    }
    return a.ready + a.failed >= n;
  };
  fleet.wait(done, deadline, std::chrono::milliseconds(100));
  const uint64_t all_read = mono_ns();
  a.finished = a.ready == n;
  if (a.ready > 0) a.last_ms = double(*std::max_element(ready_ns.begin(), ready_ns.end()) - t0) / 1e6;
  if (a.finished) a.all_read_ms = double(all_read - t0) / 1e6;
  return a;
}

// The launch floor at n: n copies of mpod-liveness-peer started at once as
// in the attach phase, each printing READY before it starts the runtime
// (--launch-only). The same binary, libraries and fork loop: what starting
// n processes costs on this machine before mpod does anything.
Attach launch_floor(Scratch& s, const Settings& st, int n) {
  Fleet fleet(s.mpod_dir + "/out-floor" + std::to_string(getpid()) + "_" + std::to_string(n));
  const std::vector<std::string> argv = {s.bin + "/mpod-liveness-peer", "--launch-only"};
  Attach a = start_at_once(fleet, n, [&](int) { return argv; }, st, nullptr);
  std::fprintf(stderr, "mpod-bench-liveness: launch floor N=%d: %d of %d READY (%d failed), last at %.0f ms\n", n,
               a.ready, n, a.failed, a.last_ms);
  fleet.stop_all();
  std::error_code ec;
  std::filesystem::remove_all(s.mpod_dir + "/out-floor" + std::to_string(getpid()) + "_" + std::to_string(n), ec);
  return a;
}

Side run_side(Scratch& s, const Settings& st, int n, bool dpdk) {
  Side side;
  const char* who = dpdk ? "DPDK" : "mpod";
  const std::string prefix = s.track_prefix(std::string(dpdk ? "mpodlvd" : "mpodlvm") + std::to_string(getpid()) + "_" +
                                            std::to_string(n));
  struct Cleanup {  // this side's files, once its processes are gone (declared before them), also after an error
    const Scratch& s;
    std::string prefix;
    ~Cleanup() {
      s.remove_files(prefix);
      std::error_code ec;
      std::filesystem::remove_all(s.mpod_dir + "/" + prefix, ec);
      std::filesystem::remove_all(s.mpod_dir + "/out-" + prefix, ec);
    }
  } cleanup{s, prefix};

  std::vector<std::string> primary_argv, secondary_argv;
  std::string primary_ready;
  if (dpdk) {
    const std::vector<std::string> eal = s.dpdk_eal_options(prefix);
    primary_argv = {s.bin + "/mpod-dpdk-primary", "--proc-type=primary", "-l", "0", "-m", std::to_string(kMemoryMb)};
    primary_argv.insert(primary_argv.end(), eal.begin(), eal.end());
    secondary_argv = {s.bin + "/mpod-dpdk-primary", "--proc-type=secondary", "-l", "0"};
    secondary_argv.insert(secondary_argv.end(), eal.begin(), eal.end());
    primary_ready = "READY";
  } else {
    const std::string memory = s.huge_dir.empty() ? "--no-huge" : "--huge-dir=" + s.huge_dir;
    const std::vector<std::string> opts = {"--file-prefix=" + prefix, "--runtime-dir=" + s.mpod_dir, memory};
    primary_argv = {s.bin + "/mpod", "serve", "-m", std::to_string(kMemoryMb)};
    primary_argv.insert(primary_argv.end(), opts.begin(), opts.end());
    secondary_argv = {s.bin + "/mpod-liveness-peer", "--proc-type=secondary"};
    secondary_argv.insert(secondary_argv.end(), opts.begin(), opts.end());
    primary_ready = "ready for prefix";
  }

  // Index 0: the primary; 1..n: the idle secondaries, of which 1 is mpod's subscriber.
  std::vector<std::string> sub_argv = secondary_argv;
  sub_argv.insert(sub_argv.end(), {"--", "--subscribe"});
  Fleet fleet(s.mpod_dir + "/out-" + prefix);
  fleet.start(primary_argv);
  if (!fleet.wait([&] { return fleet.output(0).find(primary_ready) != std::string::npos || !fleet.running(0); },
                  deadline_after(kPrimaryReadyS)) ||
      fleet.output(0).find(primary_ready) == std::string::npos)
    throw std::runtime_error(std::string(who) + " primary did not start (" + first_failure(fleet, 0, 1) +
                             "); it printed:\n" + fleet.output(0));

  // 2. Attach at once.
  Attach& a = side.attach;
  std::vector<std::string> ids;
  a = start_at_once(fleet, n, [&](int i) { return i == 0 && !dpdk ? sub_argv : secondary_argv; }, st, &ids);
  std::fprintf(stderr, "mpod-bench-liveness: %s N=%d: %d of %d READY (%d failed), last at %.0f ms\n", who, n, a.ready,
               n, a.failed, a.last_ms);
  if (a.failed > 0) {
    side.stopped = std::to_string(a.failed) + " secondaries failed";
    std::fprintf(stderr, "mpod-bench-liveness: %s N=%d: a secondary failed: %s\n", who, n,
                 first_failure(fleet, 1, size_t(n) + 1).c_str());
    return side;
  }
  if (!a.finished) {
    side.stopped = "attach did not finish in " + std::to_string(st.timeout) + " s";
    return side;
  }

  // 1. Idle CPU.
  sleep_for(kSettleS);
  std::vector<long long> before(size_t(n) + 1), before_ns(size_t(n) + 1);
  const long long machine0 = machine_busy_ticks();
  const uint64_t w0 = mono_ns();
  for (size_t i = 0; i <= size_t(n); ++i) {
    before[i] = cpu_ticks(fleet.pid(i));
    before_ns[i] = run_ns(fleet.pid(i));
  }
  const uint64_t w1 = mono_ns();
  sleep_for(st.seconds);
  const uint64_t w2 = mono_ns();
  long long ticks = 0, ns = 0;
  bool all_alive = true;
  for (size_t i = 0; i <= size_t(n); ++i) {
    const long long after = cpu_ticks(fleet.pid(i)), after_ns = run_ns(fleet.pid(i));
    all_alive = all_alive && before[i] >= 0 && after >= 0 && before_ns[i] >= 0 && after_ns >= 0 && fleet.running(i);
    ticks += after - before[i];
    ns += after_ns - before_ns[i];
  }
  const uint64_t w3 = mono_ns();
  const long long machine = machine_busy_ticks() - machine0;
  if (!all_alive) {
    side.stopped = "a process exited during the CPU window";
    std::fprintf(stderr, "mpod-bench-liveness: %s N=%d: %s: %s\n", who, n, side.stopped.c_str(),
                 first_failure(fleet, 0, size_t(n) + 1).c_str());
    return side;
  }
  side.idle.measured = true;
  side.idle.procs_pct = ticks_to_core_pct(ticks, (w2 + w3) / 2 - (w0 + w1) / 2);
  side.idle.machine_pct = ticks_to_core_pct(machine, w3 - w0);
  side.idle.run_pct = double(ns) / double((w2 + w3) / 2 - (w0 + w1) / 2) * 100.0;
  long long start_ns = 0;
  for (size_t i = 1; i <= size_t(n); ++i) start_ns += before_ns[i];
  side.idle.start_ms = double(start_ns) / n / 1e6;
  std::fprintf(stderr, "mpod-bench-liveness: %s N=%d: idle CPU %.2f%% of a core (schedstat %.3f%%, machine %.2f%%)\n",
               who, n, side.idle.procs_pct, side.idle.run_pct, side.idle.machine_pct);
  if (dpdk || st.kills <= 0) return side;

  // 3. Crash-event latency.
  const size_t sub = 1;
  size_t sub_parsed = 0;
  std::map<std::string, std::pair<std::string, uint64_t>> events;  // id -> its first exited/crashed event, time
  auto read_events = [&] {
    for (auto& t : lines_starting(fleet.output(sub), sub_parsed, "EVENT"))
      if (t.size() == 4 && t[1] != "attached") events.emplace(t[2], std::make_pair(t[1], std::strtoull(t[3].c_str(), nullptr, 10)));
  };
  std::vector<size_t> victims;
  for (size_t i = 2; i <= size_t(n); ++i) victims.push_back(i);
  std::mt19937 rng(1);
  Crash& c = side.crash;
  c.measured = true;
  for (int k = 0; k < st.kills && !victims.empty(); ++k) {
    const size_t pick = rng() % victims.size();
    const size_t v = victims[pick];
    victims.erase(victims.begin() + long(pick));
    sleep_for((kKillGapMinMs + double(rng() % (kKillGapMaxMs - kKillGapMinMs + 1))) / 1000.0);
    const std::string registration = s.mpod_dir + "/" + prefix + "/procs/" + ids[v];
    bool gone = false, gone_known = false;
    const uint64_t killed = mono_ns();
    kill(fleet.pid(v), SIGKILL);
    fleet.wait(
        [&] {
          read_events();
          if (!gone_known) {
            struct stat sb;
            if (stat(registration.c_str(), &sb) != 0 && errno == ENOENT) gone = gone_known = true;
            else if (mono_ns() - killed > kReapWindowNs) gone_known = true;
          }
          return gone_known && events.count(ids[v]);
        },
        deadline_after(kEventTimeoutS), std::chrono::milliseconds(1));
    fleet.kill_one(v);  // reaps it
    ++c.kills;
    c.reaped += gone ? 1 : 0;
    const auto e = events.find(ids[v]);
    if (e == events.end()) {
      ++c.missed;
      continue;
    }
    (e->second.first == "crashed" ? c.crashed : c.exited) += 1;
    c.latency_ms.push_back((double(e->second.second) - double(killed)) / 1e6);
  }
  std::fprintf(stderr, "mpod-bench-liveness: %s N=%d: %d kills, %d events missed, p50 %.1f ms, max %.1f ms\n", who, n,
               c.kills, c.missed, latency_quantile(c, 0.5), latency_quantile(c, 1.0));
  return side;
}

// ---- report ----


// A cell: the figure, or why there is none.
std::string cell(const Side& side, bool has, double v, int decimals) {
  if (!side.not_run.empty()) return side.not_run;
  if (!has || !std::isfinite(v)) return side.stopped.empty() ? "-" : "not measured (" + side.stopped + ")";
  return fmt(v, decimals);
}

std::string ratio(const Side& m, const Side& d, bool has_m, bool has_d, double vm, double vd) {
  if (!m.not_run.empty() || !d.not_run.empty() || !has_m || !has_d || !std::isfinite(vm) || !std::isfinite(vd)) return "-";
  if (vd <= 0) return vm <= 0 ? "1.00" : "inf (DPDK 0)";
  return fmt(vm / vd, 2);
}

const char* verdict(bool met) { return met ? "met" : "NOT met"; }

void report(const std::vector<Row>& rows, const Settings& st, const Scratch& s, double baseline_pct, bool realtime) {
  std::printf("Liveness: one primary + N idle attached secondaries, every process in this program's PID namespace; "
              "%s, %d MB per primary. mpod: `mpod serve` + mpod-liveness-peer; DPDK 22.11: mpod-dpdk-primary "
              "(rte_eal_init, then sigwait) as primary and secondaries, -l 0 --no-pci --no-telemetry.\n",
              memory_description(s.huge_dir).c_str(), kMemoryMb);
  std::printf("Idle CPU: over %d s, from 1 s after the last READY; procs = utime+stime of the primary and the N "
              "secondaries (/proc/<pid>/stat, %ld ticks/s: each process's figure is rounded down to a tick, %.2f%% over the "
              "window); schedstat = the same processes' run time in ns (/proc/<pid>/task/*/schedstat); machine = /proc/stat "
              "busy (user+nice+system+irq+softirq), all processes on the machine: it was %.1f%% of a core over 2 s "
              "before the run started.\n",
              st.seconds, sysconf(_SC_CLK_TCK), ticks_to_core_pct(1, uint64_t(st.seconds) * 1'000'000'000u),
              baseline_pct);
  if (baseline_pct > 25)
    std::printf("WARNING: the machine was busy before the run (%.0f%% of a core): attach times and event latencies "
                "include waiting for CPU that other processes held.\n",
                baseline_pct);
  std::printf("This program ran %s.\n", realtime ? "at SCHED_FIFO priority 1 (its children at SCHED_OTHER), so "
                                                  "the load it measures does not delay its forks, reads and kills"
                                                : "at normal priority (not root: no SCHED_FIFO); under load its forks, "
                                                  "reads and kills are delayed too");
  std::printf("Attach: N secondaries forked back to back, time from before the first fork to each one's own READY "
              "timestamp (CLOCK_MONOTONIC), and to this program having read all N READY lines.\n");
  std::printf("Launch floor: before each mpod row, N copies of the same secondary binary started the same way, each "
              "printing READY before it starts the runtime (--launch-only): exec, dynamic linking and process start-up "
              "on this machine, which no runtime can go below.\n");
  std::printf("Crash events (mpod only; DPDK has no peer-death event): %d SIGKILLs of random idle secondaries, "
              "%d-%d ms apart; latency = the subscriber's Channel::subscribe event time - the time just before kill(); a kill "
              "with no event for its id in %.0f s counts as later than every other in p50/p99/max.\n",
              st.kills, kKillGapMinMs, kKillGapMaxMs, kEventTimeoutS);
  std::printf("Run time per secondary: its threads' run time (schedstat) from exec to the start of the CPU window, "
              "mean over the N: attaching, then 1+ s of idling (or polling).\nFigures in %% of one core or ms.\n\n");
  std::vector<std::vector<std::string>> t = {{"measure", "N", "mpod", "DPDK 22.11", "mpod/DPDK", "target"}};
  auto add = [&](const std::string& label, const Row& r, bool has_m, double vm, bool has_d, double vd, int decimals,
                 const std::string& target) {
    t.push_back({label, std::to_string(r.n), cell(r.mpod, has_m, vm, decimals), cell(r.dpdk, has_d, vd, decimals),
                 ratio(r.mpod, r.dpdk, has_m, has_d, vm, vd), target});
  };
  auto idle_target = [&](const Row& r, double Idle::*v) {
    const Idle &m = r.mpod.idle, &d = r.dpdk.idle;
    std::string target;
    if (r.dpdk.not_run.empty())
      target = std::string("<= 2x DPDK: ") + verdict(m.measured && d.measured && m.*v <= 2 * d.*v);
    if (r.n == kTargetN)
      target += std::string(target.empty() ? "" : "; ") + "mpod <= 2%: " + verdict(m.measured && m.*v <= 2.0);
    return target;
  };
  for (const Row& r : rows)
    add("idle CPU, primary + N secondaries (utime+stime), %", r, r.mpod.idle.measured, r.mpod.idle.procs_pct,
        r.dpdk.idle.measured, r.dpdk.idle.procs_pct, 2, idle_target(r, &Idle::procs_pct));
  for (const Row& r : rows)
    add("idle CPU, the same processes (schedstat run time), %", r, r.mpod.idle.measured, r.mpod.idle.run_pct,
        r.dpdk.idle.measured, r.dpdk.idle.run_pct, 3, idle_target(r, &Idle::run_pct));
  for (const Row& r : rows)
    add("run time per secondary, exec -> window start, ms (mean)", r, r.mpod.idle.measured, r.mpod.idle.start_ms,
        r.dpdk.idle.measured, r.dpdk.idle.start_ms, 1, "");
  for (const Row& r : rows)
    add("idle CPU, whole machine, %", r, r.mpod.idle.measured, r.mpod.idle.machine_pct, r.dpdk.idle.measured,
        r.dpdk.idle.machine_pct, 2, "");
  auto attach_cell = [&](const Side& side, double v) -> std::string {
    if (!side.not_run.empty()) return side.not_run;
    if (!side.attach.finished)
      return side.attach.failed ? std::to_string(side.attach.failed) + " of " + std::to_string(side.attach.n) + " failed"
                                : "did not finish in " + std::to_string(st.timeout) + " s (" +
                                      std::to_string(side.attach.ready) + " of " + std::to_string(side.attach.n) +
                                      " READY)";
    return fmt(v, 1);
  };
  for (const Row& r : rows) {
    const Attach &m = r.mpod.attach, &d = r.dpdk.attach;
    const std::string target = r.n == kTargetBigN ? std::string("mpod <= 5000 ms: ") + verdict(m.finished && m.last_ms <= 5000) : "";
    t.push_back({"attach N at once: launch -> last READY, ms", std::to_string(r.n), attach_cell(r.mpod, m.last_ms),
                 attach_cell(r.dpdk, d.last_ms), ratio(r.mpod, r.dpdk, m.finished, d.finished, m.last_ms, d.last_ms),
                 target});
  }
  for (const Row& r : rows) {
    const Attach& f = r.floor;
    t.push_back({"launch floor: N of mpod-liveness-peer --launch-only at once, ms", std::to_string(r.n),
                 f.finished ? fmt(f.last_ms, 1) : std::to_string(f.ready) + " of " + std::to_string(f.n) + " READY",
                 "-", "-", ""});
  }
  for (const Row& r : rows) {
    const Attach &m = r.mpod.attach, &f = r.floor;
    t.push_back({"attach minus launch floor (mpod's own share), ms", std::to_string(r.n),
                 m.finished && f.finished ? fmt(m.last_ms - f.last_ms, 1) : "-", "-", "-", ""});
  }
  for (const Row& r : rows) {
    const Attach &m = r.mpod.attach, &d = r.dpdk.attach;
    t.push_back({"attach N at once: launch -> all READY lines read, ms", std::to_string(r.n),
                 attach_cell(r.mpod, m.all_read_ms), attach_cell(r.dpdk, d.all_read_ms),
                 ratio(r.mpod, r.dpdk, m.finished, d.finished, m.all_read_ms, d.all_read_ms), ""});
  }
  const std::string no_event = "n/a (no event)";
  auto crash_row = [&](const std::string& label, const Row& r, double q, const std::string& target) {
    const Crash& c = r.mpod.crash;
    const bool has = c.measured && c.kills > 0;
    const double v = has ? latency_quantile(c, q) : kNaN;
    const std::string late = "> " + fmt(kEventTimeoutS * 1000, 0) + " (no event)";
    t.push_back({label, std::to_string(r.n), has && std::isinf(v) ? late : cell(r.mpod, has, v, 1),
                 r.dpdk.not_run.empty() ? no_event : r.dpdk.not_run, "-", target});
  };
  for (const Row& r : rows) crash_row("crash event latency p50, ms", r, 0.5, "");
  for (const Row& r : rows) {
    const Crash& c = r.mpod.crash;
    std::string target;
    if (r.n == kTargetBigN)
      target = std::string("<= 100 ms: ") +
               verdict(c.measured && c.kills > 0 && latency_quantile(c, 0.99) <= 100);
    crash_row("crash event latency p99, ms", r, 0.99, target);
  }
  for (const Row& r : rows) crash_row("crash event latency max, ms", r, 1.0, "");
  for (const Row& r : rows) {
    const Crash& c = r.mpod.crash;
    const std::string v = c.measured ? std::to_string(c.crashed) + " crashed, " + std::to_string(c.exited) + " exited, " +
                                           std::to_string(c.missed) + " none in " + fmt(kEventTimeoutS, 0) + " s"
                                     : cell(r.mpod, false, kNaN, 0);
    t.push_back({"crash: events for the killed ids", std::to_string(r.n), v,
                 r.dpdk.not_run.empty() ? no_event : r.dpdk.not_run, "-", ""});
  }
  for (const Row& r : rows) {
    const Crash& c = r.mpod.crash;
    const std::string v = c.measured ? std::to_string(c.reaped) + " of " + std::to_string(c.kills)
                                     : cell(r.mpod, false, kNaN, 0);
    t.push_back({"crash: procs/<id> reaped within 1 s", std::to_string(r.n), v,
                 r.dpdk.not_run.empty() ? "n/a" : r.dpdk.not_run, "-", ""});
  }
  print_table(t, 2);
  if (st.skip_dpdk) std::printf("\nDPDK skipped (--skip-dpdk)\n");
  else if (!s.have_dpdk) std::printf("\nDPDK comparison skipped: built without libdpdk-dev (apt-get install libdpdk-dev, rebuild)\n");
  else if (s.huge_dir.empty())
    std::printf("\nDPDK comparison skipped: DPDK's secondaries need hugepages (scripts/hugepages.sh sets them up)\n");
}

Settings parse_args(int argc, char** argv) {
  Settings st;
  std::string ns = "64,256,1024";
  auto usage = [] {
    std::fprintf(stderr, "usage: mpod-bench-liveness [--n=64,256,1024 (secondaries per row)] [--seconds=10 (CPU window)] "
                         "[--kills=20 (crash samples per N, mpod)] [--timeout=120 (seconds for N secondaries to attach)] "
                         "[--dpdk-max-n=256 (largest N DPDK runs at)] [--skip-dpdk]\n");
  };
  parse_options(argc, argv,
                {value_option("--n=", ns), value_option("--seconds=", st.seconds), value_option("--kills=", st.kills),
                 value_option("--timeout=", st.timeout), value_option("--dpdk-max-n=", st.dpdk_max_n),
                 {"--skip-dpdk", [&](const std::string&) { st.skip_dpdk = true; }}},
                usage);
  st.ns.clear();
  std::istringstream f(ns);
  for (std::string v; std::getline(f, v, ',');)
    if (std::atoi(v.c_str()) > 0) st.ns.push_back(std::atoi(v.c_str()));
  if (st.ns.empty()) {
    usage();
    std::exit(2);
  }
  st.seconds = std::max(1, st.seconds);
  st.kills = std::max(0, st.kills);
  st.timeout = std::max(1, st.timeout);
  return st;
}

// Thousands of children: raise this program's descriptor limit to the hard
// one (a root driver may raise the hard one too). Children inherit it.
void raise_limits() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  if (geteuid() == 0 && r.rlim_max < 1'048'576) r.rlim_max = 1'048'576;
  r.rlim_cur = r.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &r) != 0) {
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

// This program at the lowest real-time priority, its children reset to the
// normal policy at fork: hundreds of secondaries that poll (today's mpod) or
// attach at once would otherwise starve it, and its fork loop, its reading of
// /proc before and after the window, and its kill times would stretch with
// the load being measured. It sleeps in poll() or nanosleep between short
// steps, so it takes no CPU from the processes it measures. Returns whether
// it worked (root only).
bool run_realtime() {
  sched_param p{};
  p.sched_priority = 1;
  return sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &p) == 0;
}

int run(const Settings& st) {
  raise_limits();
  const bool realtime = run_realtime();
  Scratch s("mpod-bench-liveness", kHugepagesNeeded, "mpod-dpdk-primary");
  const bool dpdk_runs = !st.skip_dpdk && s.have_dpdk && !s.huge_dir.empty();
  const double baseline = machine_pct_over(2.0);
  std::vector<Row> rows;
  for (int n : st.ns) {
    Row r;
    r.n = n;
    r.floor = launch_floor(s, st, n);
    sleep_for(1.0);
    r.mpod = run_side(s, st, n, false);
    sleep_for(1.0);  // the kernel tears down the killed side before the next starts
    if (!dpdk_runs) r.dpdk.not_run = "skipped";
    else if (n > st.dpdk_max_n) r.dpdk.not_run = "not run (mpod only)";
    else {
      r.dpdk = run_side(s, st, n, true);
      sleep_for(1.0);
    }
    rows.push_back(r);
  }
  report(rows, st, s, baseline, realtime);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Settings st = parse_args(argc, argv);
  return mpod_bench::run_interruptible("mpod-bench-liveness", "children stopped, files removed", [&] { return run(st); });
}
