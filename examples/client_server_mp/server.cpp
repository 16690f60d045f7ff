// mpod-mp-server: the server of DPDK's client_server_mp example on mpod, with
// synthetic packets instead of NIC ports.
//
//   mpod-mp-server [runtime options] -- --clients C [--packets N] [--burst B]
//                  [--ring-size R] [--seed S] [--payload BYTES]
//                  [--stats-interval SECONDS]
//
// The primary. Creates the packet pool MProc_pktmbuf_pool (2048-byte buffers,
// a per-thread cache), one single-producer/single-consumer ring per client,
// MProc_Client_<k>, and the control block (control.hpp). It waits until all C
// clients have attached (so no packet is generated for a client that is not
// there yet), then generates packets: a random-ish flow per packet, client =
// flow hash % C, a payload of 46..1500 bytes (--payload: all of one length),
// bursts enqueued to each client's ring. A packet whose ring is
// full is a drop: its buffer goes back to the pool, as DPDK's server does.
// After N packets (--packets 0: until SIGINT/SIGTERM) it tells the clients
// to finish, waits until each has drained its ring, checks that every buffer
// is back in the pool, and prints, as its last line,
//
//   summary role=server tx=<enqueued> clients=<C> drops=<dropped>
//
// with tx + drops = packets generated. Exit 0, or 1 if a client died, the
// clients' received counts do not add up to tx, a client saw a bad packet, or
// buffers are missing from the pool.
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../common/app_args.hpp"
#include "../common/backoff.hpp"
#include "../common/stop_signals.hpp"
#include "control.hpp"
#include "liveness.hpp"
#include "mpod/mempool.hpp"
#include "mpod/ring.hpp"
#include "mpod/runtime.hpp"
#include "packet.hpp"

namespace {

using namespace mpod;
using namespace csmp;
using examples::StopSignals;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxBurst = Mempool::kMaxBulk;
constexpr uint32_t kFlows = 4096;  // distinct flows the traffic is drawn from
constexpr uint32_t kPoolCache = 256;

const char* usage() {
  return "usage: mpod-mp-server [runtime options] -- --clients C [--packets N] [--burst B]\n"
         "                      [--ring-size R] [--seed S] [--payload BYTES] [--stats-interval SECONDS]\n"
         "  --clients C          clients to serve, 1..32; the server waits for all of them\n"
         "  --packets N          packets to generate, then finish; 0 (default): until SIGINT/SIGTERM\n"
         "  --burst B            packets per burst, 1..512 (default 32)\n"
         "  --ring-size R        capacity of each client's ring (default 1024)\n"
         "  --seed S             traffic seed (default 1): same seed, same packets\n"
         "  --payload BYTES      payload of every packet, 46..1500 (46: 64-byte Ethernet frames);\n"
         "                       default 0: each packet's drawn from 46..1500\n"
         "  --stats-interval S   print progress every S seconds (default 0: never; 2 with --packets 0)\n\n";
}

struct Config {
  uint64_t clients = 0, packets = 0, burst = 32, ring_size = 1024, seed = 1, payload = 0, stats = UINT64_MAX;
};

Config parse(int argc, char** argv, int first) {
  Config c;
  for (examples::AppArgs a(argc, argv, first); !a.done();) {
    if (a.number("--clients", &c.clients, 1, kMaxClients) || a.number("--packets", &c.packets) ||
        a.number("--burst", &c.burst, 1, kMaxBurst) || a.number("--ring-size", &c.ring_size, 1, 1u << 20) ||
        a.number("--seed", &c.seed) || a.number("--payload", &c.payload) ||
        a.number("--stats-interval", &c.stats, 0, 3600))
      continue;
    a.unknown();
  }
  if (c.clients == 0) throw examples::UsageError("--clients C is required (1 to 32)");
  if (c.payload != 0 && (c.payload < kMinPayload || c.payload > kMaxPayload))
    throw examples::UsageError("--payload " + std::to_string(c.payload) +
                               " is not an Ethernet payload size: give 46..1500 bytes (46 makes 64-byte frames), "
                               "or 0 for lengths drawn per packet");
  if (c.stats == UINT64_MAX) c.stats = c.packets ? 0 : 2;
  return c;
}

struct Flow {
  FiveTuple tuple;
  uint32_t client;
};

class Server {
 public:
  Server(Runtime& rt, const Config& c) : rt_(rt), c_(c), clients_(uint32_t(c.clients)) {
    // Enough buffers to fill every ring, plus what the caches (one per
    // client and the server's, up to 1.5x kPoolCache each) and bursts in
    // flight hold, so the server never waits for buffers while rings have room.
    const uint64_t n = c.clients * c.ring_size + (c.clients + 1) * (2 * kPoolCache + 2 * kMaxBurst);
    try {
      pool_ = Mempool::create(rt, kPoolName, uint32_t(n), kBufSize, MempoolOptions{kPoolCache, {}});
    } catch (const Error& e) {
      if (e.code() != Errc::no_memory) throw;
      throw Error(e.code(), std::string(e.what()) + "; the pool needs " + std::to_string(n * kBufSize >> 20) +
                                " MiB for " + std::to_string(c.clients) + " rings of " + std::to_string(c.ring_size) +
                                ": give fewer --clients or a smaller --ring-size, reserve more hugepages, or use --no-huge",
                  e.path(), e.sys_errno());
    }
    for (uint32_t k = 0; k < clients_; ++k)
      rings_.push_back(Ring::create(rt, ring_name(k), uint32_t(c.ring_size), RingOptions{8, Sync::single, Sync::single}));
    auto zone = rt.memzones().reserve(kControlName, sizeof(Control));
    ctl_ = new (zone.addr) Control{};
    ctl_->version = kControlVersion;
    ctl_->clients = clients_;
    ctl_->ring_size = uint32_t(c.ring_size);
    ctl_->magic.store(kControlMagic, std::memory_order_release);
    pending_.resize(clients_);
    npending_.assign(clients_, 0);
    dead_.assign(clients_, false);
    claiming_since_.assign(clients_, std::nullopt);
    Rng rng(c.seed * 0x9e3779b97f4a7c15ull + 1);
    for (uint32_t i = 0; i < kFlows; ++i) {
      FiveTuple t = random_flow(rng);
      flows_.push_back({t, client_of(t, clients_)});
    }
    rng_ = Rng(c.seed);
    std::printf("server: primary ready (pid %d, host %s): pool %s of %llu buffers of %u bytes, rings %s..%s of %llu, "
                "payloads of %s bytes\n",
                rt.self().pid, rt.self().hostname.c_str(), kPoolName, static_cast<unsigned long long>(n), kBufSize,
                ring_name(0).c_str(), ring_name(clients_ - 1).c_str(), static_cast<unsigned long long>(c.ring_size),
                c.payload ? std::to_string(c.payload).c_str() : "46..1500");
  }

  // Waits until every client has attached; false if stopped first.
  bool wait_for_clients() {
    std::vector<bool> seen(clients_, false);
    uint32_t attached = 0;
    bool told = false;
    auto start = Clock::now();
    while (attached < clients_) {
      for (uint32_t k = 0; k < clients_; ++k) {
        if (seen[k] || ctl_->slots[k].state.load(std::memory_order_acquire) < kAttached) continue;
        seen[k] = true;
        ++attached;
        const ClientSlot& s = ctl_->slots[k];
        std::printf("server: client %u attached (pid %d, host %s)\n", k, s.pid, s.hostname);
      }
      if (attached == clients_) break;
      if (StopSignals::requested()) return false;
      if (!told && Clock::now() - start > std::chrono::seconds(1)) {
        told = true;
        std::printf("server: waiting for %u more client(s): mpod-mp-client --proc-type=secondary "
                    "[same --file-prefix/--runtime-dir] -- --client-id K, K in 0..%u\n",
                    clients_ - attached, clients_ - 1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  void generate() {
    void* bufs[kMaxBurst];
    examples::Backoff backoff;
    auto next_stats = Clock::now() + std::chrono::seconds(c_.stats);
    while (!StopSignals::requested() && (c_.packets == 0 || generated_ < c_.packets)) {
      const uint32_t b = uint32_t(c_.packets ? std::min<uint64_t>(c_.burst, c_.packets - generated_) : c_.burst);
      if (!pool_.get_bulk(bufs, b)) {  // every buffer is in a ring or a cache: let the clients catch up
        backoff.idle();
        continue;
      }
      backoff.reset();
      for (uint32_t i = 0; i < b; ++i) {
        const Flow& f = flows_[rng_.next() % kFlows];
        fill_packet(bufs[i], f.tuple, generated_ + i, uint32_t(c_.payload));
        pending_[f.client][npending_[f.client]++] = bufs[i];
      }
      generated_ += b;
      const uint64_t drops_before = drops_;
      for (uint32_t k = 0; k < clients_; ++k) flush(k);
      publish();
      // A full ring means a client is behind. A NIC would not wait, and
      // neither does the server (those packets are dropped), but on a
      // machine with fewer cores than processes it lets the clients run.
      if (drops_ != drops_before) std::this_thread::yield();
      if (c_.stats && Clock::now() >= next_stats) {
        next_stats += std::chrono::seconds(c_.stats);
        print_stats();
      }
    }
    if (StopSignals::requested())
      std::printf("server: stopped by signal %d after %llu packets\n", StopSignals::signal(),
                  static_cast<unsigned long long>(generated_));
  }

  // Tells the clients to finish and waits until each has drained its ring
  // (or left, or died: then the server drains that ring, as drops).
  void finish() {
    ctl_->finish.store(1, std::memory_order_release);
    auto next_liveness = Clock::now();
    auto next_note = Clock::now() + std::chrono::seconds(10);
    for (;;) {
      std::vector<uint32_t> waiting;
      for (uint32_t k = 0; k < clients_; ++k) {
        const uint32_t s = ctl_->slots[k].state.load(std::memory_order_acquire);
        if ((s == kAttached || s == kClaiming) && !dead_[k]) waiting.push_back(k);
        // A client killed while claiming never wrote its id: no liveness
        // test can find it. Claiming takes microseconds; after 2 s it died.
        if (s != kClaiming) claiming_since_[k].reset();
        else if (!claiming_since_[k]) claiming_since_[k] = Clock::now();
        else if (!dead_[k] && Clock::now() - *claiming_since_[k] > std::chrono::seconds(2)) {
          dead_[k] = true;
          std::fprintf(stderr, "server: client %u died while claiming its slot; the packets in its ring count as "
                       "drops\n", k);
        }
      }
      if (waiting.empty()) break;
      if (Clock::now() >= next_liveness) {
        next_liveness = Clock::now() + std::chrono::milliseconds(100);
        for (uint32_t k : waiting)
          // The state is read again after the liveness test: a client stores
          // done before it exits, so one that finished while we looked is not dead.
          if (ctl_->slots[k].state.load() == kAttached && !is_alive(rt_, ctl_->slots[k].process_id) &&
              ctl_->slots[k].state.load() == kAttached) {
            dead_[k] = true;
            std::fprintf(stderr, "server: client %u (pid %d, host %s) died before finishing; the packets in its "
                         "ring count as drops\n", k, ctl_->slots[k].pid, ctl_->slots[k].hostname);
          }
      }
      if (Clock::now() >= next_note) {
        next_note += std::chrono::seconds(10);
        std::printf("server: still waiting for %zu client(s) to drain their rings (first: %u)\n", waiting.size(),
                    waiting[0]);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    bool any_dead = false;
    for (uint32_t k = 0; k < clients_; ++k) {
      if (!dead_[k] && ctl_->slots[k].state.load() != kLeft) continue;
      any_dead = any_dead || dead_[k];
      void* bufs[kMaxBurst];
      while (unsigned n = rings_[k].dequeue_burst(bufs, kMaxBurst)) {
        pool_.put_bulk(bufs, n);
        tx_ -= n;
        drops_ += n;
      }
    }
    if (any_dead) pool_.reclaim_dead_caches();
    publish();
  }

  // Per-client lines, checks, and the summary line. Returns the exit code.
  int report() {
    uint64_t rx = 0, bad = 0;
    bool any_dead = false;
    for (uint32_t k = 0; k < clients_; ++k) {
      const ClientSlot& s = ctl_->slots[k];
      const uint32_t st = s.state.load();
      const char* state = dead_[k] ? "died" : st == kDone ? "done" : st == kLeft ? "left early" : "never attached";
      std::printf("server: client %u rx=%llu bad=%llu %s (pid %d, host %s)\n", k,
                  static_cast<unsigned long long>(s.rx.load()), static_cast<unsigned long long>(s.bad.load()), state,
                  s.pid, s.hostname);
      if (const uint32_t before = s.died_before.load())
        std::printf("server: client %u: %u earlier client(s) with this id died and were replaced\n", k, before);
      rx += s.rx.load();
      bad += s.bad.load();
      any_dead = any_dead || dead_[k];
    }
    uint32_t died = 0;  // dead_ counts the last holder of a slot; died_before those a new client replaced
    for (uint32_t k = 0; k < clients_; ++k) died += uint32_t(dead_[k]) + ctl_->slots[k].died_before.load();
    any_dead = any_dead || died > 0;
    int rc = 0;
    if (any_dead) rc = 1;
    if (rx != tx_) {
      std::fprintf(stderr, "server: error: the clients received %llu packets but %llu were enqueued for them%s\n",
                   static_cast<unsigned long long>(rx), static_cast<unsigned long long>(tx_),
                   any_dead ? " (a dead client's packets in hand are lost)" : "; packets were lost or duplicated");
      rc = 1;
    }
    if (bad) {
      std::fprintf(stderr, "server: error: clients reported %llu bad packets (see their output)\n",
                   static_cast<unsigned long long>(bad));
      rc = 1;
    }
    if (!check_pool(died)) rc = 1;
    std::printf("summary role=server tx=%llu clients=%u drops=%llu\n", static_cast<unsigned long long>(tx_), clients_,
                static_cast<unsigned long long>(drops_));
    return rc;
  }

 private:
  // Enqueues the packets waiting for client k; what does not fit is dropped.
  void flush(uint32_t k) {
    const uint32_t n = npending_[k];
    if (n == 0) return;
    npending_[k] = 0;
    const bool gone = dead_[k] || ctl_->slots[k].state.load(std::memory_order_relaxed) == kLeft;
    const uint32_t sent = gone ? 0 : rings_[k].enqueue_burst(pending_[k].data(), n);
    tx_ += sent;
    if (sent < n) {
      pool_.put_bulk(pending_[k].data() + sent, n - sent);
      drops_ += n - sent;
    }
  }

  void publish() {
    ctl_->generated.store(generated_, std::memory_order_relaxed);
    ctl_->tx.store(tx_, std::memory_order_relaxed);
    ctl_->drops.store(drops_, std::memory_order_relaxed);
  }

  void print_stats() {
    std::printf("server: generated=%llu tx=%llu drops=%llu pool free=%u/%u |",
                static_cast<unsigned long long>(generated_), static_cast<unsigned long long>(tx_),
                static_cast<unsigned long long>(drops_), pool_.available(), pool_.size());
    for (uint32_t k = 0; k < clients_; ++k)
      std::printf(" c%u rx=%llu", k, static_cast<unsigned long long>(ctl_->slots[k].rx.load(std::memory_order_relaxed)));
    std::printf("\n");
  }

  // Every buffer must be back: the clients gave back their caches before
  // saying done, and the server gives back its own now. Those a client held
  // in hand when it was killed (`died` clients) are lost with it: counted,
  // not a fault of the pool.
  bool check_pool(uint32_t died) {
    pool_.flush_thread_cache();
    const uint32_t free = pool_.available();
    if (free == pool_.size()) return true;
    if (died > 0) {
      std::printf("server: %u of %u packet buffers of pool %s were lost with the %u client(s) that died holding "
                  "them\n", pool_.size() - free, pool_.size(), kPoolName, died);
      return true;
    }
    std::fprintf(stderr, "server: error: %u of %u packet buffers are not back in pool %s after every client "
                 "finished, and no client died; a client kept or lost buffers (a bug: report it with this output)\n",
                 pool_.size() - free, pool_.size(), kPoolName);
    return false;
  }

  Runtime& rt_;
  Config c_;
  uint32_t clients_;
  Mempool pool_;
  std::vector<Ring> rings_;
  Control* ctl_ = nullptr;
  std::vector<Flow> flows_;
  Rng rng_{1};
  std::vector<std::array<void*, kMaxBurst>> pending_;  // per client, flushed after every burst
  std::vector<uint32_t> npending_;
  std::vector<bool> dead_;
  std::vector<std::optional<Clock::time_point>> claiming_since_;  // per slot, while finish() sees it claiming
  uint64_t generated_ = 0, tx_ = 0, drops_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (examples::wants_help(argc, argv)) {
    std::printf("%s%s", usage(), options_usage());
    return 0;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  StopSignals::install();
  try {
    int first = 0;
    Options o;
    first = parse_options(argc, argv, o);
    Config c = parse(argc, argv, first);
    if (o.proc_type == ProcType::secondary)
      throw examples::UsageError("the server is the primary: drop --proc-type=secondary");
    auto rt = Runtime::start(o);
    if (rt->role() != Role::primary)
      throw Error(Errc::already_exists, "--proc-type=auto made this a secondary: a primary already runs with prefix '" +
                                            o.file_prefix + "' in " + rt->domain_dir() +
                                            "; stop it, or give this server another --file-prefix");
    Server server(*rt, c);
    StopSignals::arm();
    if (server.wait_for_clients()) server.generate();
    server.finish();
    return server.report();
  } catch (const examples::UsageError& u) {
    std::fprintf(stderr, "mpod-mp-server: %s\n%s", u.what(), usage());
    return 2;
  } catch (const Error& err) {
    std::fprintf(stderr, "mpod-mp-server: error: %s\n", err.what());
    return 1;
  }
}
