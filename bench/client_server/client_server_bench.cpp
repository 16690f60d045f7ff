// mpod-bench-client-server [--packets=N] [--repeat=R] [--pods]: packets per
// second of DPDK's client_server_mp workload with 1 server and 2 clients, on
// mpod (mpod-mp-server, mpod-mp-client) beside DPDK 22.11 (dpdk-client-server,
// the same program ported back to DPDK), in the same run.
//
// Each side: the server (primary) on CPU 0, each client a separate process
// (secondary) on CPU 1 (DPDK: EAL lcore 0 on CPU 0 for the server, lcores 1
// and 2 both on CPU 1 for the clients: DPDK's per-lcore mempool caches need
// distinct lcore ids). The server generates N synthetic packets (2048-byte
// buffers from a pool with a 256-object cache, 46..1500-byte payloads written
// and checksummed, flow hash picks the client, bursts of 32, SP/SC rings of
// 1024, full ring = drop), the clients check every byte and give the buffers
// back. Both sides run the same per-packet code (dpdk_client_server.c is a
// line-for-line C port of examples/client_server_mp); before measuring, this
// program checks that both generate the same packets (a digest of the first
// packets from DPDK's port against one computed with mpod's packet.hpp).
//
// Mpps = server tx / time from the server's last "client attached" line to
// its summary line (generation, finish and drain; not start-up), read by this
// program from the server's line-buffered output, the same way on both sides.
// A second figure uses server start to server exit (includes start-up).
// Runs alternate which side goes first; the table keeps each side's best run
// and every run is listed. --pods (root): every mpod process is PID 1 of its
// own pod (unshare --pid --fork --mount-proc --uts --ipc --net); DPDK's
// processes cannot run that way and stay plain processes.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
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
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../examples/client_server_mp/packet.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kDefaultPackets = 5'000'000;
constexpr int kDefaultRepeat = 3;
constexpr unsigned kClients = 2;
constexpr unsigned kBurst = 32;        // mpod-mp-server's and mpod-mp-client's default
constexpr unsigned kRingSize = 1024;   // mpod-mp-server's default
constexpr uint64_t kSeed = 1;          // mpod-mp-server's default
constexpr uint64_t kDigestPackets = 200'000;
constexpr long kHugepagesNeeded = 40;  // one side at a time: a 13 MB pool and rings, plus slack
constexpr int kServerCpu = 0, kClientCpu = 1;

volatile sig_atomic_t g_interrupted = 0;
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

struct Settings {
  uint64_t packets = kDefaultPackets;
  int repeat = kDefaultRepeat;
  bool pods = false;
};

// A program run with its stdout captured (stderr passes through), pinned to
// one CPU. Killed and reaped by the destructor if still running, and killed by
// the kernel if this process dies (PR_SET_PDEATHSIG).
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { kill_now(); }

  void start(std::vector<std::string> argv, int cpu) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe: " + std::string(strerror(errno)));
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    const pid_t parent = getpid();
    started_ = Clock::now();
    pid_ = fork();
    if (pid_ == 0) {  // only async-signal-safe calls until exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      sched_setaffinity(0, sizeof set, &set);
      dup2(p[1], STDOUT_FILENO);
      execv(args[0], args.data());
      _exit(127);
    }
    close(p[1]);
    out_ = p[0];
    if (pid_ < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
    name_ = fs::path(argv[0]).filename().string();
  }

  // Reads stdout until `text` has appeared `times` times; returns when the
  // last one was read, or throws after the deadline or at end of file.
  Clock::time_point wait_for(const std::string& text, int times, Clock::time_point deadline) {
    for (;;) {
      if (count(text) >= times) return Clock::now();
      if (g_interrupted) throw Interrupted();
      if (Clock::now() > deadline)
        throw std::runtime_error(name_ + " did not print '" + text + "' in time; it printed:\n" + text_);
      pollfd pfd{out_, POLLIN, 0};
      if (poll(&pfd, 1, 200) <= 0) continue;
      char buf[4096];
      const ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) throw std::runtime_error(name_ + " exited before printing '" + text + "'; it printed:\n" + text_);
      text_.append(buf, static_cast<size_t>(n));
    }
  }

  // Reads to end of file and reaps; returns when it exited and its status.
  int finish(Clock::time_point deadline, Clock::time_point* exited = nullptr) {
    for (;;) {
      if (g_interrupted) throw Interrupted();
      if (Clock::now() > deadline) throw std::runtime_error(name_ + " did not exit in time; it printed:\n" + text_);
      pollfd pfd{out_, POLLIN, 0};
      if (poll(&pfd, 1, 200) <= 0) continue;
      char buf[4096];
      const ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) break;
      text_.append(buf, static_cast<size_t>(n));
    }
    int st = 0;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    if (exited) *exited = Clock::now();
    pid_ = -1;
    close(out_);
    out_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  const std::string& output() const { return text_; }
  Clock::time_point started() const { return started_; }

  // The number after "key=" on the line starting with `prefix`, or -1.
  long long field(const std::string& prefix, const std::string& key) const {
    const auto at = text_.find(prefix);
    if (at == std::string::npos) return -1;
    const std::string line = text_.substr(at, text_.find('\n', at) - at);
    const auto k = line.find(" " + key + "=");
    return k == std::string::npos ? -1 : std::atoll(line.c_str() + k + key.size() + 2);
  }

 private:
  int count(const std::string& text) const {
    int n = 0;
    for (auto at = text_.find(text); at != std::string::npos; at = text_.find(text, at + 1)) ++n;
    return n;
  }
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
  std::string text_, name_;
  Clock::time_point started_;
};

// Where the runs live, removed on the way out (also after an error or ^C).
struct Scratch {
  std::string bin;       // directory of this program and the others
  std::string mpod_dir;  // mpod's runtime dir (a fresh temporary one)
  std::string huge_dir;  // hugetlbfs mount both sides use; empty: no hugepages (DPDK skipped)
  std::vector<std::string> prefixes;  // of every run, mpod's and DPDK's
  bool have_dpdk = false;

  ~Scratch() {
    std::error_code ec;
    if (!mpod_dir.empty()) fs::remove_all(mpod_dir, ec);
    for (const auto& prefix : prefixes) remove_files(prefix);
  }
  // What a run's processes may leave behind when they are killed: DPDK's
  // runtime dir, and page files <prefix>map_N (both DPDK and mpod name them so).
  void remove_files(const std::string& prefix) const {
    std::error_code ec;
    // DPDK's runtime dir: /var/run/dpdk/<prefix> for root, else under $XDG_RUNTIME_DIR or /tmp.
    const char* bases[] = {"/var/run", getenv("XDG_RUNTIME_DIR"), "/tmp"};
    for (const char* base : bases)
      if (base) fs::remove_all(fs::path(base) / "dpdk" / prefix, ec);
    if (!huge_dir.empty())
      for (auto& f : fs::directory_iterator(huge_dir, ec))
        if (f.path().filename().string().starts_with(prefix + "map_")) fs::remove(f.path(), ec);
  }
};

struct Run {
  double mpps = 0;        // tx / (summary - last attach)
  double mpps_total = 0;  // tx / (server exit - server start)
  double seconds = 0;     // summary - last attach
  long long tx = 0, drops = 0, rx = 0;
};

// The three processes of one side; throws if any fails or a count is off.
Run run_side(const Scratch& s, const Settings& st, bool dpdk, const std::string& prefix) {
  const auto deadline = Clock::now() + std::chrono::seconds(60) + std::chrono::microseconds(st.packets * 5);
  std::vector<std::string> server_argv, client_argv[kClients];
  if (dpdk) {
    const std::vector<std::string> eal = {"--file-prefix=" + prefix, "--no-pci", "--no-telemetry",
                                          "--log-level=lib.eal:error", "--huge-dir=" + s.huge_dir};
    server_argv = {s.bin + "/dpdk-client-server", "server", std::to_string(kClients), std::to_string(st.packets),
                   std::to_string(kBurst), std::to_string(kRingSize), std::to_string(kSeed), "--proc-type=primary",
                   "-l", std::to_string(kServerCpu), "-m", "64"};
    server_argv.insert(server_argv.end(), eal.begin(), eal.end());
    for (unsigned k = 0; k < kClients; ++k) {
      // Lcore ids 1, 2, ... all on CPU 1: each process needs its own lcore id (mempool caches are per lcore id).
      client_argv[k] = {s.bin + "/dpdk-client-server", "client", std::to_string(k), std::to_string(kBurst),
                        "--proc-type=secondary", "--lcores=" + std::to_string(k + 1) + "@" + std::to_string(kClientCpu)};
      client_argv[k].insert(client_argv[k].end(), eal.begin(), eal.end());
    }
  } else {
    std::vector<std::string> opts = {"--file-prefix=" + prefix, "--runtime-dir=" + s.mpod_dir};
    if (s.huge_dir.empty()) opts.push_back("--no-huge");
    else opts.push_back("--huge-dir=" + s.huge_dir);
    std::vector<std::string> pod;
    if (st.pods) pod = {"/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--uts", "--ipc", "--net"};
    server_argv = pod;
    server_argv.push_back(s.bin + "/mpod-mp-server");
    server_argv.insert(server_argv.end(), opts.begin(), opts.end());
    server_argv.insert(server_argv.end(), {"--", "--clients", std::to_string(kClients), "--packets",
                                           std::to_string(st.packets), "--burst", std::to_string(kBurst),
                                           "--ring-size", std::to_string(kRingSize), "--seed", std::to_string(kSeed)});
    for (unsigned k = 0; k < kClients; ++k) {
      client_argv[k] = pod;
      client_argv[k].push_back(s.bin + "/mpod-mp-client");
      client_argv[k].push_back("--proc-type=secondary");
      client_argv[k].insert(client_argv[k].end(), opts.begin(), opts.end());
      client_argv[k].insert(client_argv[k].end(), {"--", "--client-id", std::to_string(k), "--burst", std::to_string(kBurst)});
    }
  }
  struct Cleanup {  // this run's files, once its processes are gone (declared before them), also after an error
    const Scratch& s;
    std::string prefix;
    ~Cleanup() { s.remove_files(prefix); }
  } cleanup{s, prefix};

  Child server, clients[kClients];
  server.start(server_argv, kServerCpu);
  server.wait_for("primary ready", 1, deadline);
  for (unsigned k = 0; k < kClients; ++k) clients[k].start(client_argv[k], kClientCpu);
  const auto attached = server.wait_for(" attached (", kClients, deadline);
  const auto summary = server.wait_for("summary role=server", 1, deadline);
  Clock::time_point exited;
  const int server_rc = server.finish(deadline, &exited);
  Run r;
  for (unsigned k = 0; k < kClients; ++k) {
    const int rc = clients[k].finish(deadline);
    const long long rx = clients[k].field("summary role=client", "rx");
    if (rc != 0 || rx < 0)
      throw std::runtime_error(std::string(dpdk ? "DPDK" : "mpod") + " client " + std::to_string(k) + " failed (exit " +
                               std::to_string(rc) + "); it printed:\n" + clients[k].output());
    if (st.pods && !dpdk && clients[k].field("summary role=client", "pid") != 1)
      throw std::runtime_error("--pods: mpod client " + std::to_string(k) + " was not PID 1 of a pod of its own; it printed:\n" +
                               clients[k].output());
    r.rx += rx;
  }
  r.tx = server.field("summary role=server", "tx");
  r.drops = server.field("summary role=server", "drops");
  if (server_rc != 0 || r.tx < 0 || r.drops < 0 || r.tx + r.drops != static_cast<long long>(st.packets) || r.rx != r.tx)
    throw std::runtime_error(std::string(dpdk ? "DPDK" : "mpod") + " server failed (exit " + std::to_string(server_rc) +
                             ", tx " + std::to_string(r.tx) + " + drops " + std::to_string(r.drops) + " vs " +
                             std::to_string(st.packets) + " packets, clients rx " + std::to_string(r.rx) +
                             "); it printed:\n" + server.output());
  r.seconds = std::chrono::duration<double>(summary - attached).count();
  r.mpps = double(r.tx) / r.seconds / 1e6;
  r.mpps_total = double(r.tx) / std::chrono::duration<double>(exited - server.started()).count() / 1e6;
  return r;
}

// The first packets as mpod-mp-server makes them (its flow table, generator
// and fill_packet), reduced to one line; dpdk-client-server digest prints the same.
std::string mpod_digest(uint64_t seed, uint32_t clients, uint64_t packets) {
  using namespace csmp;
  struct Flow {
    FiveTuple tuple;
    uint32_t client;
  };
  std::vector<Flow> flows;
  Rng flow_rng(seed * 0x9e3779b97f4a7c15ull + 1);
  for (uint32_t i = 0; i < 4096; ++i) {
    FiveTuple t = random_flow(flow_rng);
    flows.push_back({t, client_of(t, clients)});
  }
  Rng rng(seed);
  alignas(64) static uint8_t buf[kBufSize];
  std::vector<uint64_t> per_client(clients, 0);
  uint64_t len_sum = 0, sum = 0;
  for (uint64_t i = 0; i < packets; ++i) {
    const Flow& f = flows[rng.next() % 4096];
    fill_packet(buf, f.tuple, i);
    const auto* h = reinterpret_cast<const PacketHeader*>(buf);
    ++per_client[f.client];
    len_sum += h->len;
    sum = sum * 31 + h->checksum + flow_hash(h->flow);
  }
  std::string out = "digest len_sum=" + std::to_string(len_sum) + " sum=" + std::to_string(sum) + " clients=";
  for (uint32_t k = 0; k < clients; ++k) out += (k ? "," : "") + std::to_string(per_client[k]);
  return out;
}

void check_same_packets(const Scratch& s) {
  Child c;
  c.start({s.bin + "/dpdk-client-server", "digest", std::to_string(kSeed), std::to_string(kClients),
           std::to_string(kDigestPackets)},
          kServerCpu);
  const int rc = c.finish(Clock::now() + std::chrono::seconds(60));
  std::string theirs = c.output();
  while (!theirs.empty() && theirs.back() == '\n') theirs.pop_back();
  const std::string ours = mpod_digest(kSeed, kClients, kDigestPackets);
  if (rc != 0 || theirs != ours)
    throw std::runtime_error("dpdk-client-server does not make the packets mpod-mp-server makes (its port of "
                             "packet.hpp drifted): DPDK '" + theirs + "', mpod '" + ours + "'");
}

std::string fmt(double v, int decimals) {
  if (!std::isfinite(v) || v <= 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(rows[0].size(), 0);
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string out = "|";
    for (size_t i = 0; i < r.size(); ++i) {
      const size_t pad = w[i] - r[i].size();
      out += " " + (i == 0 ? r[i] + std::string(pad, ' ') : std::string(pad, ' ') + r[i]) + " |";
    }
    std::puts(out.c_str());
  };
  line(rows[0]);
  std::string sep = "|";
  for (size_t i = 0; i < w.size(); ++i) sep += (i == 0 ? ":" : "-") + std::string(w[i], '-') + (i == 0 ? "-|" : ":|");
  std::puts(sep.c_str());
  for (size_t i = 1; i < rows.size(); ++i) line(rows[i]);
}

void report(const std::vector<Run>& mpod, const std::vector<Run>& dpdk, const Settings& st, const Scratch& s) {
  auto best = [](const std::vector<Run>& runs, double Run::*m) {
    const Run* b = nullptr;
    for (auto& r : runs)
      if (!b || r.*m > (*b).*m) b = &r;
    return b ? *b : Run{};
  };
  std::printf("client_server_mp, 1 server + %u clients (separate processes%s), %llu packets, burst %u, rings of %u, "
              "2048-byte buffers, pool cache 256; server on CPU 0, clients on CPU 1; %s.\n",
              kClients, st.pods ? "; mpod's each PID 1 of its own pod" : "", (unsigned long long)st.packets, kBurst,
              kRingSize, s.huge_dir.empty() ? "no hugepages (plain memory)" : ("hugepages in " + s.huge_dir).c_str());
  std::printf("mpod: mpod-mp-server/mpod-mp-client; DPDK 22.11: dpdk-client-server, the same work ported line for line "
              "(same packets: digest checked).\n");
  std::printf("Mpps = server tx / time; best of %d runs (sides taking turns to go first). ratio = mpod/DPDK: above 1, "
              "mpod is faster.\n\n",
              st.repeat);
  const Run m = best(mpod, &Run::mpps), d = best(dpdk, &Run::mpps);
  const Run mt = best(mpod, &Run::mpps_total), dt = best(dpdk, &Run::mpps_total);
  std::vector<std::vector<std::string>> t = {{"measure", "mpod", "DPDK", "mpod/DPDK"}};
  t.push_back({"Mpps, all clients attached -> server summary", fmt(m.mpps, 3), fmt(d.mpps, 3), fmt(m.mpps / d.mpps, 2)});
  t.push_back({"Mpps, server start -> server exit", fmt(mt.mpps_total, 3), fmt(dt.mpps_total, 3),
               fmt(mt.mpps_total / dt.mpps_total, 2)});
  t.push_back({"drops in the best run (of the packets)", std::to_string(m.drops),
               dpdk.empty() ? "-" : std::to_string(d.drops), "-"});
  print_table(t);
  std::printf("\nEvery run (Mpps attach->summary / start->exit, drops):\n");
  for (int side = 0; side < 2; ++side) {
    const auto& runs = side ? dpdk : mpod;
    std::string line = side ? "  DPDK:" : "  mpod:";
    for (auto& r : runs)
      line += " " + fmt(r.mpps, 3) + "/" + fmt(r.mpps_total, 3) + " (" + std::to_string(r.drops) + ")";
    if (runs.empty()) line += " -";
    std::puts(line.c_str());
  }
  if (!s.have_dpdk) std::printf("\nDPDK comparison skipped: built without libdpdk-dev (apt-get install libdpdk-dev, rebuild)\n");
  else if (s.huge_dir.empty())
    std::printf("\nDPDK comparison skipped: DPDK's secondaries need hugepages (scripts/hugepages.sh sets them up)\n");
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
    if (a.starts_with("--packets=")) st.packets = std::strtoull(a.c_str() + 10, nullptr, 10);
    else if (a.starts_with("--repeat=")) st.repeat = std::atoi(a.c_str() + 9);
    else if (a == "--pods") st.pods = true;
    else {
      std::fprintf(stderr, "usage: mpod-bench-client-server [--packets=N (default %llu)] [--repeat=R (default %d)] "
                           "[--pods (root: mpod's processes each in a pod of its own)]\n",
                   (unsigned long long)kDefaultPackets, kDefaultRepeat);
      std::exit(a == "--help" ? 0 : 2);
    }
  }
  st.packets = std::max<uint64_t>(1, st.packets);
  st.repeat = std::max(1, st.repeat);
  return st;
}

void on_signal(int) { g_interrupted = 1; }

int run(const Settings& st) {
  if (st.pods && (geteuid() != 0 || access("/usr/bin/unshare", X_OK) != 0))
    throw std::runtime_error("--pods needs root and /usr/bin/unshare");
  Scratch s;
  s.bin = fs::read_symlink("/proc/self/exe").parent_path();
  char tmpl[] = "/tmp/mpod-bench-cs-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp: " + std::string(strerror(errno)));
  s.mpod_dir = tmpl;
  s.huge_dir = pick_huge_dir();
  s.have_dpdk = access((s.bin + "/dpdk-client-server").c_str(), X_OK) == 0;
  const bool dpdk_runs = s.have_dpdk && !s.huge_dir.empty();
  if (s.have_dpdk) check_same_packets(s);
  std::vector<Run> mpod, dpdk;
  for (int rep = 0; rep < st.repeat; ++rep) {
    const bool dpdk_first = rep % 2 == 1;
    for (int turn = 0; turn < 2; ++turn) {
      const bool is_dpdk = (turn == 0) == dpdk_first;
      if (is_dpdk && !dpdk_runs) continue;
      const std::string prefix = (is_dpdk ? "mpodcsd" : "mpodcsm") + std::to_string(getpid()) + "_" + std::to_string(rep);
      s.prefixes.push_back(prefix);
      const Run r = run_side(s, st, is_dpdk, prefix);
      (is_dpdk ? dpdk : mpod).push_back(r);
      std::fprintf(stderr, "mpod-bench-client-server: run %d/%d, %s: %.3f Mpps (%.2f s), %lld drops\n", rep + 1,
                   st.repeat, is_dpdk ? "DPDK" : "mpod", r.mpps, r.seconds, r.drops);
    }
  }
  report(mpod, dpdk, st, s);
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
    std::fprintf(stderr, "mpod-bench-client-server: interrupted; children stopped, files removed\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpod-bench-client-server: %s\n", e.what());
    return 1;
  }
}
