// mpod-bench-attach [--iterations=N]: whole-process secondary attach time
// (fork+exec to "ready", median of N) and peak RSS, mpod beside DPDK 22.11's
// secondary in the same run, with ratios. Prints a markdown table.
//
// Both sides attach to a live primary with 64 MB of 2 MB hugepages. DPDK gets
// every flag that makes its secondary cheaper without changing what it does:
// --no-pci (no devices to scan here), --no-telemetry (no socket thread), -l 0
// (one lcore), --log-level=lib.eal:error (no console output cost).
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/scratch.hpp"

namespace {

std::string self_dir() { return std::filesystem::read_symlink("/proc/self/exe").parent_path(); }

double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

long hugepages_free() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long v = 0;
  while (in >> key) {
    if (key == "HugePages_Free:") {
      in >> v;
      return v;
    }
    in.ignore(256, '\n');
  }
  return 0;
}

std::vector<char*> c_argv(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// A primary running in the background; its stdout is read until `ready_text`.
struct Primary {
  std::string name;
  pid_t pid = -1;
  ~Primary() { stop(); }

  bool start(std::vector<std::string> argv, const std::string& ready_text) {
    int out[2];
    if (pipe(out) != 0) return false;
    pid = fork();
    if (pid == 0) {
      dup2(out[1], 1);
      close(out[0]);
      close(out[1]);
      auto a = c_argv(argv);
      execv(a[0], a.data());
      std::perror("exec");
      _exit(127);
    }
    close(out[1]);
    std::string seen;
    char buf[512];
    double deadline = now_ms() + 30000;
    while (seen.find(ready_text) == std::string::npos && now_ms() < deadline) {
      ssize_t n = read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      seen.append(buf, static_cast<size_t>(n));
    }
    close(out[0]);
    if (seen.find(ready_text) == std::string::npos) {
      std::fprintf(stderr, "mpod-bench-attach: primary %s did not become ready; it printed:\n%s\n",
                   name.c_str(), seen.c_str());
      stop();
      return false;
    }
    return true;
  }

  void stop() {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    pid = -1;
  }
};

struct Sample {
  double ready_ms;
  double peak_rss_mb;
};

// Runs one probe: time from just before fork to the ready byte; peak RSS from wait4.
// With `until_exit` the program never signals: "ready" is its exit (the pipe closes).
bool run_probe(std::vector<std::string> argv, Sample* s, bool until_exit) {
  int ready[2];
  if (pipe(ready) != 0) return false;
  double t0 = now_ms();
  pid_t pid = fork();
  if (pid == 0) {
    close(ready[0]);
    setenv("MPOD_READY_FD", std::to_string(ready[1]).c_str(), 1);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    auto a = c_argv(argv);
    execv(a[0], a.data());
    _exit(127);
  }
  close(ready[1]);
  char byte;
  bool ok = read(ready[0], &byte, 1) == (until_exit ? 0 : 1);
  double t1 = now_ms();
  close(ready[0]);
  int st = 0;
  rusage ru{};
  wait4(pid, &st, 0, &ru);
  ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  s->ready_ms = t1 - t0;
  s->peak_rss_mb = ru.ru_maxrss / 1024.0;
  return ok;
}

struct Stats {
  double median_ms, p90_ms, min_ms, rss_mb;
};

Stats summarize(std::vector<Sample> v) {
  auto pick = [&](double q) {
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.ready_ms < b.ready_ms; });
    return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))].ready_ms;
  };
  Stats s{pick(0.5), pick(0.9), pick(0.0), 0};
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.peak_rss_mb < b.peak_rss_mb; });
  s.rss_mb = v[v.size() / 2].peak_rss_mb;
  return s;
}

struct Contender {
  std::string label;
  std::vector<std::string> argv;
  std::vector<Sample> samples;
  bool until_exit = false;  // the floor: a program that does nothing
};

}  // namespace

int main(int argc, char** argv) {
  int iterations = 30;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--iterations=", 13) == 0) iterations = std::max(1, std::atoi(argv[i] + 13));
    else {
      std::fprintf(stderr, "usage: mpod-bench-attach [--iterations=N]\n");
      return 2;
    }
  }
  const std::string bin = self_dir();
  if (hugepages_free() < 80) {
    std::printf("SKIP: need 80 free 2 MB hugepages (DPDK multi-process needs hugepages), have %ld; "
                "echo 256 > /proc/sys/vm/nr_hugepages and mount hugetlbfs at /dev/hugepages\n",
                hugepages_free());
    return 0;
  }
  char tmpl[] = "/tmp/mpod-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string rt_dir = tmpl;
  const bool have_dpdk = access((bin + "/dpdk-attach-probe").c_str(), X_OK) == 0;
  // DPDK leaves its runtime dir (and, if killed, its page files) behind.
  const mpod_bench::RunFilesRemover dpdk_files{"mpodbenchd", "/dev/hugepages"};

  Primary mpod_huge{"mpod (hugepages)"}, mpod_plain{"mpod (--no-huge)"}, dpdk{"DPDK 22.11"};
  if (!mpod_huge.start({bin + "/mpod", "serve", "--runtime-dir=" + rt_dir, "--file-prefix=benchm", "-m", "64"},
                       "ready"))
    return 1;
  if (!mpod_plain.start({bin + "/mpod", "serve", "--runtime-dir=" + rt_dir, "--file-prefix=benchn", "--no-huge",
                         "-m", "64"},
                        "ready"))
    return 1;
  const std::vector<std::string> dpdk_common = {"--file-prefix=mpodbenchd", "--no-pci", "--no-telemetry", "-l", "0",
                                                "--log-level=lib.eal:error"};
  std::vector<Contender> runs;
  // What fork+exec alone costs on this machine: no attach can be faster.
  runs.push_back({"floor: fork+exec of /bin/true", {"/bin/true"}, {}, true});
  runs.push_back({"mpod secondary (hugepages)",
                  {bin + "/mpod-attach-probe", "--proc-type=secondary", "--runtime-dir=" + rt_dir,
                   "--file-prefix=benchm"},
                  {}});
  runs.push_back({"mpod secondary (--no-huge)",
                  {bin + "/mpod-attach-probe", "--proc-type=secondary", "--runtime-dir=" + rt_dir,
                   "--file-prefix=benchn", "--no-huge"},
                  {}});
  if (have_dpdk) {
    std::vector<std::string> p = {bin + "/mpod-dpdk-primary", "--proc-type=primary", "-m", "64",
                                  "--huge-dir=/dev/hugepages"};
    p.insert(p.end(), dpdk_common.begin(), dpdk_common.end());
    if (!dpdk.start(p, "READY")) return 1;
    std::vector<std::string> s = {bin + "/dpdk-attach-probe", "--proc-type=secondary"};
    s.insert(s.end(), dpdk_common.begin(), dpdk_common.end());
    runs.push_back({"DPDK 22.11 secondary (hugepages)", s, {}});
  }

  for (int i = 0; i < iterations; ++i) {
    for (auto& r : runs) {  // interleaved, so machine noise hits every contender alike
      Sample s;
      if (!run_probe(r.argv, &s, r.until_exit)) {
        std::fprintf(stderr, "mpod-bench-attach: %s failed to attach (iteration %d); run it by hand: %s ...\n",
                     r.label.c_str(), i, r.argv[0].c_str());
        return 1;
      }
      r.samples.push_back(s);
    }
  }
  mpod_huge.stop();
  mpod_plain.stop();
  dpdk.stop();
  std::filesystem::remove_all(rt_dir);

  std::printf("Secondary attach, whole process (fork+exec to ready), %d runs each, interleaved\n\n", iterations);
  std::printf("| secondary | median ms | p90 ms | min ms | peak RSS MB |\n|---|---:|---:|---:|---:|\n");
  std::vector<Stats> stats;
  for (auto& r : runs) {
    stats.push_back(summarize(r.samples));
    auto& s = stats.back();
    std::printf("| %s | %.2f | %.2f | %.2f | %.1f |\n", r.label.c_str(), s.median_ms, s.p90_ms, s.min_ms, s.rss_mb);
  }
  if (!have_dpdk) {
    std::printf("\nDPDK comparison skipped: built without libdpdk-dev (apt-get install libdpdk-dev, then rebuild)\n");
    return 0;
  }
  const Stats& m = stats[1];
  const Stats& d = stats.back();
  std::printf("\nmpod/DPDK (hugepages): time %.3f (DPDK/mpod = %.1fx), peak RSS %.3f (DPDK/mpod = %.1fx)\n",
              m.median_ms / d.median_ms, d.median_ms / m.median_ms, m.rss_mb / d.rss_mb, d.rss_mb / m.rss_mb);
  std::printf("targets: time <= 1/10 of DPDK: %s; RSS <= 1/5 of DPDK: %s\n",
              m.median_ms * 10 <= d.median_ms ? "met" : "NOT met", m.rss_mb * 5 <= d.rss_mb ? "met" : "NOT met");
  return 0;
}
