// mpod-bench-client-server [--packets=N] [--repeat=R] [--payload=BYTES]
// [--dpdk-pool-ops=NAME] [--pods]: packets per second of DPDK's
// client_server_mp workload with 1 server and 2 clients, on mpod
// (mpod-mp-server, mpod-mp-client) beside DPDK 22.11 (dpdk-client-server,
// the same program ported back to DPDK), in the same run.
//
// Each side: the server (primary) on CPU 0, each client a separate process
// (secondary) on CPU 1 (DPDK: EAL lcore 0 on CPU 0 for the server, lcores 1
// and 2 both on CPU 1 for the clients: DPDK's per-lcore mempool caches need
// distinct lcore ids). The server generates N synthetic packets (2048-byte
// buffers from a pool with a 256-object cache, payloads written and
// checksummed, flow hash picks the client, bursts of 32, SP/SC rings of
// 1024, full ring = drop), the clients check every byte and give the buffers
// back. Two workloads, each run in every repetition: payloads of 46..1500
// bytes (each drawn from that range), and 64-byte frames (46-byte payloads,
// the size packet rates are usually quoted at). With mixed lengths, writing
// and checksumming ~770 bytes a packet is most of each server's time, the
// same code on both sides; 64-byte frames leave the per-packet cost to the
// pool, the rings and the line crossings, as in DPDK's example, whose server
// forwards what the NIC wrote without touching payloads. --payload=BYTES
// runs one workload (0: mixed lengths). --dpdk-pool-ops=NAME gives DPDK's
// pool another mempool handler than rte_mempool_create's default ring_mp_mc
// (ring_mt_rts, ring_mt_hts: DPDK's answer to preemption on shared CPUs).
// Both sides run the same per-packet code (dpdk_client_server.c is a
// line-for-line C port of examples/client_server_mp); before measuring, this
// program checks that both generate the same packets (a digest of the first
// packets from DPDK's port against one computed with mpod's packet.hpp).
//
// Mpps = server tx / time from the server's last "client attached" line to
// its summary line (generation, finish and drain; not start-up), read by this
// program from the server's line-buffered output, the same way on both sides.
// A second figure uses server start to server exit (includes start-up).
// Runs come in pairs, mpod's and DPDK's back to back, the side going first
// alternating; the table compares each run with its partner (median of the
// per-pair ratios, bench/common/paired.hpp says why) and lists every run.
// --pods (root): every mpod process is PID 1 of its own pod (unshare --pid
// --fork --mount-proc --uts --ipc --net); DPDK's processes cannot run that
// way and stay plain processes.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../examples/client_server_mp/packet.hpp"
#include "common/child_process.hpp"
#include "common/hugepages.hpp"
#include "common/interrupt.hpp"
#include "common/options.hpp"
#include "common/paired.hpp"
#include "common/scratch.hpp"
#include "common/table.hpp"

namespace {

using namespace mpod_bench;

constexpr uint64_t kDefaultPackets = 2'000'000;
constexpr int kDefaultRepeat = 11;
constexpr unsigned kClients = 2;
constexpr unsigned kBurst = 32;        // mpod-mp-server's and mpod-mp-client's default
constexpr unsigned kRingSize = 1024;   // mpod-mp-server's default
constexpr uint64_t kSeed = 1;          // mpod-mp-server's default
constexpr uint64_t kDigestPackets = 200'000;
constexpr long kHugepagesNeeded = 40;  // one side at a time: a 13 MB pool and rings, plus slack
constexpr int kServerCpu = 0, kClientCpu = 1;
// Children's output wakes this program at once whatever the period (the
// server's lines are its timestamps, see above); the period bounds how late a
// deadline or ^C is noticed, and each timed-out wake-up may take CPU 0 or 1
// from the processes being measured.
constexpr std::chrono::milliseconds kPollPeriod{200};

struct Settings {
  uint64_t packets = 0;  // 0: each workload's default
  int repeat = kDefaultRepeat;
  bool pods = false;
  std::vector<uint32_t> payloads = {0, csmp::kMinPayload};  // 0: mixed lengths
  std::string dpdk_pool_ops = "ring_mp_mc";
};

// Packets per run: 64-byte frames go about 4x as fast as mixed lengths, so
// they get 5x the packets, and a run of either lasts about as long (0.5-1 s);
// other fixed lengths get what mixed lengths get.
uint64_t packets_for(const Settings& st, uint32_t payload) {
  return st.packets ? st.packets : payload == csmp::kMinPayload ? 5 * kDefaultPackets : kDefaultPackets;
}

std::string workload_name(uint32_t payload) {
  return payload == 0 ? "payloads of 46..1500 bytes"
                      : payload == csmp::kMinPayload ? "64-byte frames (46-byte payloads)"
                                                      : std::to_string(payload) + "-byte payloads";
}

// Reads c's stdout until `text` has appeared `times` times; returns when the
// last one was read. Throws after the deadline or at end of file: a side whose
// process failed has no figure.
Clock::time_point wait_for(Child& c, const std::string& text, int times, Clock::time_point deadline) {
  switch (c.read_until(text, times, deadline)) {
    case ReadEnd::found:
      return Clock::now();
    case ReadEnd::end_of_file:
      throw std::runtime_error(c.name() + " exited before printing '" + text + "'; it printed:\n" + c.output());
    default:
      throw std::runtime_error(c.name() + " did not print '" + text + "' in time; it printed:\n" + c.output());
  }
}

// Reads c's stdout to its end and reaps it; returns its exit status. Throws
// (killing it) if it is still running at the deadline.
int finish(Child& c, Clock::time_point deadline) {
  const int rc = c.finish(deadline);
  if (rc < 0) throw std::runtime_error(c.name() + " did not exit in time; it printed:\n" + c.output());
  return rc;
}

// The number after "key=" on the line of `out` starting with `prefix`, or -1.
long long field(const std::string& out, const std::string& prefix, const std::string& key) {
  const auto at = out.find(prefix);
  if (at == std::string::npos) return -1;
  const std::string line = out.substr(at, out.find('\n', at) - at);
  const auto k = line.find(" " + key + "=");
  return k == std::string::npos ? -1 : std::atoll(line.c_str() + k + key.size() + 2);
}

struct Run {
  double mpps = 0;        // tx / (summary - last attach)
  double mpps_total = 0;  // tx / (server exit - server start)
  double seconds = 0;     // summary - last attach
  long long tx = 0, drops = 0, rx = 0;
};

// The three processes of one side; throws if any fails or a count is off.
Run run_side(const Scratch& s, const Settings& st, uint32_t payload, bool dpdk, const std::string& prefix) {
  const uint64_t packets = packets_for(st, payload);
  const auto deadline = Clock::now() + std::chrono::seconds(60) + std::chrono::microseconds(packets * 5);
  std::vector<std::string> server_argv, client_argv[kClients];
  if (dpdk) {
    const std::vector<std::string> eal = s.dpdk_eal_options(prefix);  // with --huge-dir: DPDK runs only on hugepages
    server_argv = {s.bin + "/dpdk-client-server", "server", std::to_string(kClients), std::to_string(packets),
                   std::to_string(kBurst), std::to_string(kRingSize), std::to_string(kSeed), std::to_string(payload),
                   st.dpdk_pool_ops, "--proc-type=primary",
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
                                           std::to_string(packets), "--burst", std::to_string(kBurst),
                                           "--ring-size", std::to_string(kRingSize), "--seed", std::to_string(kSeed),
                                           "--payload", std::to_string(payload)});
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
  server.start(server_argv, {.cpu = kServerCpu, .poll_period = kPollPeriod});
  wait_for(server, "primary ready", 1, deadline);
  for (unsigned k = 0; k < kClients; ++k)
    clients[k].start(client_argv[k], {.cpu = kClientCpu, .poll_period = kPollPeriod});
  const auto attached = wait_for(server, " attached (", kClients, deadline);
  const auto summary = wait_for(server, "summary role=server", 1, deadline);
  const int server_rc = finish(server, deadline);
  const Clock::time_point exited = Clock::now();
  Run r;
  for (unsigned k = 0; k < kClients; ++k) {
    const int rc = finish(clients[k], deadline);
    const long long rx = field(clients[k].output(), "summary role=client", "rx");
    if (rc != 0 || rx < 0)
      throw std::runtime_error(std::string(dpdk ? "DPDK" : "mpod") + " client " + std::to_string(k) + " failed (exit " +
                               std::to_string(rc) + "); it printed:\n" + clients[k].output());
    if (st.pods && !dpdk && field(clients[k].output(), "summary role=client", "pid") != 1)
      throw std::runtime_error("--pods: mpod client " + std::to_string(k) + " was not PID 1 of a pod of its own; it printed:\n" +
                               clients[k].output());
    r.rx += rx;
  }
  r.tx = field(server.output(), "summary role=server", "tx");
  r.drops = field(server.output(), "summary role=server", "drops");
  if (server_rc != 0 || r.tx < 0 || r.drops < 0 || r.tx + r.drops != static_cast<long long>(packets) || r.rx != r.tx)
    throw std::runtime_error(std::string(dpdk ? "DPDK" : "mpod") + " server failed (exit " + std::to_string(server_rc) +
                             ", tx " + std::to_string(r.tx) + " + drops " + std::to_string(r.drops) + " vs " +
                             std::to_string(packets) + " packets, clients rx " + std::to_string(r.rx) +
                             "); it printed:\n" + server.output());
  r.seconds = std::chrono::duration<double>(summary - attached).count();
  r.mpps = double(r.tx) / r.seconds / 1e6;
  r.mpps_total = double(r.tx) / std::chrono::duration<double>(exited - server.started()).count() / 1e6;
  return r;
}

// The first packets as mpod-mp-server makes them (its flow table, generator
// and fill_packet), reduced to one line; dpdk-client-server digest prints the same.
std::string mpod_digest(uint64_t seed, uint32_t clients, uint64_t packets, uint32_t payload) {
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
    fill_packet(buf, f.tuple, i, payload);
    const auto* h = reinterpret_cast<const PacketHeader*>(buf);
    ++per_client[f.client];
    len_sum += h->len;
    sum = sum * 31 + h->checksum + flow_hash(h->flow);
  }
  std::string out = "digest len_sum=" + std::to_string(len_sum) + " sum=" + std::to_string(sum) + " clients=";
  for (uint32_t k = 0; k < clients; ++k) out += (k ? "," : "") + std::to_string(per_client[k]);
  return out;
}

void check_same_packets(const Scratch& s, uint32_t payload) {
  Child c;
  c.start({s.bin + "/dpdk-client-server", "digest", std::to_string(kSeed), std::to_string(kClients),
           std::to_string(kDigestPackets), std::to_string(payload)},
          {.cpu = kServerCpu, .poll_period = kPollPeriod});
  const int rc = finish(c, Clock::now() + std::chrono::seconds(60));
  std::string theirs = c.output();
  while (!theirs.empty() && theirs.back() == '\n') theirs.pop_back();
  const std::string ours = mpod_digest(kSeed, kClients, kDigestPackets, payload);
  if (rc != 0 || theirs != ours)
    throw std::runtime_error("dpdk-client-server does not make the packets mpod-mp-server makes (its port of "
                             "packet.hpp drifted): DPDK '" + theirs + "', mpod '" + ours + "'");
}

// A rate or ratio, or "-" where a side has no run (its Mpps stay 0).
std::string fmt_rate(double v, int decimals) { return v > 0 ? fmt(v, decimals) : "-"; }

// One workload's runs, in pairs.
struct Workload {
  uint32_t payload = 0;
  std::vector<Run> mpod, dpdk;
};

void report(const std::vector<Workload>& ws, const Settings& st, const Scratch& s) {
  std::string packets;  // "2000000 (payloads of ...), 10000000 (64-byte frames ...)"
  for (const Workload& w : ws)
    packets += (packets.empty() ? "" : ", ") + std::to_string(packets_for(st, w.payload)) + " (" +
               workload_name(w.payload) + ")";
  std::printf("client_server_mp, 1 server + %u clients (separate processes%s), packets per run %s, burst %u, rings of "
              "%u, 2048-byte buffers, pool cache 256; server on CPU 0, clients on CPU 1; %s.\n",
              kClients, st.pods ? "; mpod's each PID 1 of its own pod" : "", packets.c_str(), kBurst, kRingSize,
              memory_description(s.huge_dir).c_str());
  std::printf("mpod: mpod-mp-server/mpod-mp-client; DPDK 22.11: dpdk-client-server, the same work ported line for line "
              "(same packets: digest checked), its pool on mempool handler %s.\n",
              st.dpdk_pool_ops.c_str());
  std::printf("Mpps = server tx / time. %d pairs of runs per workload, mpod's and DPDK's back to back (the side going "
              "first alternating); ratio = mpod's Mpps / DPDK's in the same pair, median over the pairs (quartiles in "
              "brackets): above 1, mpod is faster.\n\n",
              st.repeat);
  std::vector<std::vector<std::string>> t = {
      {"workload", "measure", "mpod median", "DPDK median", "mpod/DPDK per pair", "pairs mpod faster"}};
  for (const Workload& w : ws) {
    auto row = [&](const char* label, double Run::*m, int decimals) {
      std::vector<double> a, b;  // DPDK's, mpod's: b/a is mpod/DPDK
      for (auto& r : w.dpdk) a.push_back(r.*m);
      for (auto& r : w.mpod) b.push_back(r.*m);
      const bool paired = !w.dpdk.empty();
      const PairedSummary ps = paired ? summarise_pairs(a, b) : PairedSummary{};
      t.push_back({workload_name(w.payload), label, fmt(quantile(b, 0.5), decimals),
                   paired ? fmt(ps.a_median, decimals) : "-", ratio_with_range(ps, 2),
                   paired ? std::to_string(ps.b_above) + " of " + std::to_string(ps.pairs) : "-"});
    };
    row("Mpps, all clients attached -> server summary", &Run::mpps, 3);
    row("Mpps, server start -> server exit", &Run::mpps_total, 3);
    std::vector<double> md, dd;
    for (auto& r : w.mpod) md.push_back(double(r.drops));
    for (auto& r : w.dpdk) dd.push_back(double(r.drops));
    t.push_back({workload_name(w.payload), "packets dropped on full rings", fmt(quantile(md, 0.5), 0),
                 w.dpdk.empty() ? "-" : fmt(quantile(dd, 0.5), 0), "-", "-"});
  }
  print_table(t, 2);
  for (const Workload& w : ws) {
    std::printf("\nEvery run, %s, in pairs (Mpps attach->summary / start->exit, drops):\n",
                workload_name(w.payload).c_str());
    for (int side = 0; side < 2; ++side) {
      const auto& runs = side ? w.dpdk : w.mpod;
      std::string line = side ? "  DPDK:" : "  mpod:";
      for (auto& r : runs)
        line += " " + fmt_rate(r.mpps, 3) + "/" + fmt_rate(r.mpps_total, 3) + " (" + std::to_string(r.drops) + ")";
      if (runs.empty()) line += " -";
      std::puts(line.c_str());
    }
  }
  if (!s.have_dpdk) std::printf("\nDPDK comparison skipped: built without libdpdk-dev (apt-get install libdpdk-dev, rebuild)\n");
  else if (s.huge_dir.empty())
    std::printf("\nDPDK comparison skipped: DPDK's secondaries need hugepages (scripts/hugepages.sh sets them up)\n");
}

Settings parse_args(int argc, char** argv) {
  Settings st;
  uint64_t payload = UINT64_MAX;
  auto usage = [] {
    std::fprintf(stderr, "usage: mpod-bench-client-server [--packets=N per run (default or 0: %llu, 64-byte frames %llu)] "
                         "[--repeat=R (default %d)] "
                         "[--payload=BYTES (one workload: 46..1500, or 0 for mixed lengths; default: both 0 and 46)] "
                         "[--dpdk-pool-ops=NAME (DPDK's pool's handler, default ring_mp_mc; ring_mt_rts, ring_mt_hts)] "
                         "[--pods (root: mpod's processes each in a pod of its own)]\n",
                 (unsigned long long)kDefaultPackets, 5 * (unsigned long long)kDefaultPackets, kDefaultRepeat);
  };
  parse_options(argc, argv,
                {value_option("--packets=", st.packets), value_option("--repeat=", st.repeat),
                 value_option("--payload=", payload), value_option("--dpdk-pool-ops=", st.dpdk_pool_ops),
                 {"--pods", [&](const std::string&) { st.pods = true; }}},
                usage);
  if (payload != UINT64_MAX) {
    if (payload != 0 && (payload < csmp::kMinPayload || payload > csmp::kMaxPayload)) {
      std::fprintf(stderr, "mpod-bench-client-server: --payload=%llu is outside 46..1500 (or 0 for mixed lengths)\n",
                   (unsigned long long)payload);
      usage();
      std::exit(2);
    }
    st.payloads = {uint32_t(payload)};
  }
  st.repeat = std::max(1, st.repeat);
  return st;
}

int run(const Settings& st) {
  if (st.pods && (geteuid() != 0 || access("/usr/bin/unshare", X_OK) != 0))
    throw std::runtime_error("--pods needs root and /usr/bin/unshare");
  Scratch s("mpod-bench-cs", kHugepagesNeeded, "dpdk-client-server");
  const bool dpdk_runs = s.have_dpdk && !s.huge_dir.empty();
  std::vector<Workload> ws;
  for (uint32_t payload : st.payloads) {
    if (s.have_dpdk) check_same_packets(s, payload);
    ws.push_back({payload, {}, {}});
  }
  // Each repetition runs one pair of every workload, so a slow spell of the
  // machine falls on all of them alike.
  for (int rep = 0; rep < st.repeat; ++rep) {
    const bool dpdk_first = rep % 2 == 1;
    for (Workload& w : ws)
      for (int turn = 0; turn < 2; ++turn) {
        const bool is_dpdk = (turn == 0) == dpdk_first;
        if (is_dpdk && !dpdk_runs) continue;
        const std::string prefix = s.track_prefix((is_dpdk ? "mpodcsd" : "mpodcsm") + std::to_string(getpid()) + "_" +
                                                  std::to_string(rep) + "_" + std::to_string(w.payload));
        const Run r = run_side(s, st, w.payload, is_dpdk, prefix);
        (is_dpdk ? w.dpdk : w.mpod).push_back(r);
        std::fprintf(stderr, "mpod-bench-client-server: run %d/%d, %s, %s: %.3f Mpps (%.2f s), %lld drops\n", rep + 1,
                     st.repeat, workload_name(w.payload).c_str(), is_dpdk ? "DPDK" : "mpod", r.mpps, r.seconds,
                     r.drops);
      }
  }
  report(ws, st, s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Settings st = parse_args(argc, argv);
  return mpod_bench::run_interruptible("mpod-bench-client-server", "children stopped, files removed",
                                       [&] { return run(st); });
}
