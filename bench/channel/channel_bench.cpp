// mpod-bench-channel [--count=N]: synchronous request round trip (p50, p99)
// and requests per second with 1 and 8 concurrent requesters, mpod's channel
// beside DPDK 22.11's rte_mp_request_sync in the same run, with ratios.
//
// Both: a primary process answers an action with an empty reply; a secondary
// process times requests to it from T threads. Both on 2 MB hugepages (DPDK
// multi-process needs them). DPDK runs with --no-pci --no-telemetry -l 0.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/scratch.hpp"
#include "mpod/runtime.hpp"

namespace {

struct Result {
  double p50_us = 0, p99_us = 0, rps = 0;
};

std::string self_dir() { return std::filesystem::read_symlink("/proc/self/exe").parent_path(); }

// Runs argv, returning its stdout; `ready_text` non-empty: returns as soon as it appears, leaving it running.
struct Proc {
  pid_t pid = -1;
  std::string out;
  ~Proc() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
  bool start(std::vector<std::string> argv, const std::string& until) {
    int p[2];
    if (pipe(p) != 0) return false;
    pid = fork();
    if (pid == 0) {
      dup2(p[1], 1);
      close(p[0]);
      close(p[1]);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    close(p[1]);
    char buf[512];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) {
      out.append(buf, static_cast<size_t>(n));
      if (!until.empty() && out.find(until) != std::string::npos) break;
    }
    close(p[0]);
    if (until.empty()) {
      int st;
      waitpid(pid, &st, 0);
      pid = -1;
      return WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    return out.find(until) != std::string::npos;
  }
};

Result mpod_run(mpod::Runtime& rt, const mpod::ProcessId& primary, int threads, int count, int gap_us = 0) {
  std::vector<double> all(size_t(threads) * count);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < count; ++i) {
        auto a = std::chrono::steady_clock::now();
        auto r = rt.channel().request(primary, "mpod.ping", {}, std::chrono::milliseconds(5000));
        if (r.replies.size() != 1) {
          std::fprintf(stderr, "mpod-bench-channel: request failed\n");
          std::exit(1);
        }
        all[size_t(t) * count + i] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count();
        if (gap_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
      }
    });
  for (auto& t : ts) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::sort(all.begin(), all.end());
  return {all[all.size() / 2], all[size_t(all.size() * 0.99)], all.size() / secs};
}

Result parse_dpdk(const std::string& out) {
  Result r;
  auto at = out.find("RESULT ");
  if (at == std::string::npos ||
      std::sscanf(out.c_str() + at, "RESULT p50_us=%lf p99_us=%lf rps=%lf", &r.p50_us, &r.p99_us, &r.rps) != 3)
    r = {};
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 5000;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--count=", 8) == 0) count = std::max(10, std::atoi(argv[i] + 8));
  const std::string bin = self_dir();
  char tmpl[] = "/tmp/mpod-bench-ch-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string rt_dir = tmpl;
  const bool have_dpdk = access((bin + "/dpdk-mp-bench").c_str(), X_OK) == 0;
  // DPDK leaves its runtime dir (and, if killed, its page files) behind.
  const mpod_bench::RunFilesRemover dpdk_files{"mpodbenchch", "/dev/hugepages"};

  Proc mpod_primary;
  if (!mpod_primary.start({bin + "/mpod", "serve", "--runtime-dir=" + rt_dir, "--file-prefix=benchch", "-m", "16"}, "ready")) {
    std::fprintf(stderr, "mpod-bench-channel: mpod serve did not start: %s\n", mpod_primary.out.c_str());
    return 1;
  }
  mpod::Options o;
  o.runtime_dir = rt_dir;
  o.file_prefix = "benchch";
  o.proc_type = mpod::ProcType::secondary;
  auto rt = mpod::Runtime::start(o);
  mpod::ProcessId primary;
  for (auto& p : rt->processes())
    if (p.role == mpod::Role::primary && p.alive) primary = p.id;

  const std::vector<std::string> eal = {"--file-prefix=mpodbenchch", "--no-pci", "--no-telemetry", "-l", "0",
                                        "--log-level=lib.eal:error"};
  Proc dpdk_primary;
  if (have_dpdk) {
    std::vector<std::string> a = {bin + "/dpdk-mp-bench", "primary", "1", "1", "--proc-type=primary", "-m", "16",
                                  "--huge-dir=/dev/hugepages"};
    a.insert(a.end(), eal.begin(), eal.end());
    if (!dpdk_primary.start(a, "READY")) {
      std::fprintf(stderr, "mpod-bench-channel: the DPDK primary did not start (needs hugepages)\n");
      return 1;
    }
  }
  std::printf("Synchronous request round trip, secondary -> primary, empty payload, %d requests per requester\n\n", count);
  std::printf("| requesters | mpod p50 us | mpod p99 us | mpod req/s | DPDK p50 us | DPDK p99 us | DPDK req/s | p50 mpod/DPDK | req/s mpod/DPDK |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  // Rows: back-to-back requests from 1 and 8 threads (the receivers stay
  // awake), then 1 request every millisecond (both sides fall asleep between
  // requests, so every round trip pays for two wake-ups).
  struct Row {
    int threads, gap_us;
    const char* label;
  };
  for (Row row : {Row{1, 0, "1"}, Row{8, 0, "8"}, Row{1, 1000, "1, 1 ms apart"}}) {
    const int threads = row.threads;
    int per = row.gap_us ? std::min(count, 2000) : threads == 1 ? count : count / threads;
    mpod_run(*rt, primary, threads, std::min(per, 200), row.gap_us);  // warm-up
    Result m = mpod_run(*rt, primary, threads, per, row.gap_us);
    Result d;
    if (have_dpdk) {
      if (row.gap_us) setenv("DPDK_MP_BENCH_GAP_US", std::to_string(row.gap_us).c_str(), 1);
      else unsetenv("DPDK_MP_BENCH_GAP_US");
      Proc sec;
      std::vector<std::string> a = {bin + "/dpdk-mp-bench", "secondary", std::to_string(threads), std::to_string(per),
                                    "--proc-type=secondary"};
      a.insert(a.end(), eal.begin(), eal.end());
      if (!sec.start(a, "")) std::fprintf(stderr, "mpod-bench-channel: DPDK secondary failed: %s\n", sec.out.c_str());
      d = parse_dpdk(sec.out);
    }
    if (d.p50_us > 0)
      std::printf("| %s | %.1f | %.1f | %.0f | %.1f | %.1f | %.0f | %.2f | %.2f |\n", row.label, m.p50_us, m.p99_us, m.rps,
                  d.p50_us, d.p99_us, d.rps, m.p50_us / d.p50_us, m.rps / d.rps);
    else
      std::printf("| %s | %.1f | %.1f | %.0f | - | - | - | - | - |\n", row.label, m.p50_us, m.p99_us, m.rps);
  }
  rt.reset();
  std::filesystem::remove_all(rt_dir);
  if (!have_dpdk) std::printf("\nDPDK comparison skipped: built without libdpdk-dev\n");
  return 0;
}
