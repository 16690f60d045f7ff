// mpod-mp-client: a client of DPDK's client_server_mp example on mpod.
//
//   mpod-mp-client [runtime options] -- --client-id K [--burst B]
//
// A secondary (the default here; DPDK's needs --proc-type=secondary). It may
// start before the server: give it --wait-primary=SECONDS. It attaches as
// client K in the control block, then dequeues bursts from its ring
// MProc_Client_<K>, checks every packet (payload checksum, length, that its
// flow hashes to K, sequence numbers increasing), reads all of its data and
// gives the buffer back to the pool. When the server says finish and its
// ring is empty, it gives back its cached buffers, prints the shortest and
// longest payload it received (client K: payloads of MIN..MAX bytes), and
// prints, as its last line,
//
//   summary role=client id=<K> rx=<packets> bad=<bad packets> pid=<pid in its namespace>
//
// Exit 0, or 1 if a packet was bad or the server went away without saying
// finish. SIGINT/SIGTERM: stop now (the server counts what is left in the
// ring as drops), print the summary, exit 0.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "../common/app_args.hpp"
#include "../common/backoff.hpp"
#include "../common/lookup.hpp"
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
constexpr uint64_t kBadShown = 5;  // bad packets described in detail

const char* usage() {
  return "usage: mpod-mp-client [runtime options] -- --client-id K [--burst B]\n"
         "  --client-id K   this client's number, 0..C-1 for a server started with --clients C (also -n K)\n"
         "  --burst B       packets per dequeue, 1..512 (default 32)\n"
         "  Runs as a secondary; started before the server, it needs --wait-primary=SECONDS.\n\n";
}

struct Config {
  uint64_t id = UINT64_MAX, burst = 32;
};

Config parse(int argc, char** argv, int first) {
  Config c;
  for (examples::AppArgs a(argc, argv, first); !a.done();) {
    if (a.number("--client-id", &c.id, 0, kMaxClients - 1) || a.number("-n", &c.id, 0, kMaxClients - 1) ||
        a.number("--burst", &c.burst, 1, kMaxBurst))
      continue;
    a.unknown();
  }
  if (c.id == UINT64_MAX) throw examples::UsageError("--client-id K is required");
  return c;
}

bool proc_type_given(int argc, char** argv, int first) {
  for (int i = 1; i < first && i < argc; ++i)
    if (std::strncmp(argv[i], "--proc-type", 11) == 0) return true;
  return false;
}

// The control block, once the server has created everything.
Control& find_control(Runtime& rt) {
  const double wait = std::max(rt.options().wait_primary_s, 5.0);
  return *examples::lookup_when_created(
      [&] {
        auto zone = rt.memzones().lookup(kControlName);
        auto* ctl = zone ? static_cast<Control*>(zone->addr) : nullptr;
        if (!ctl || ctl->magic.load(std::memory_order_acquire) != kControlMagic)
          throw Error(Errc::not_found, std::string("the server's control block ") + kControlName + " is not in " +
                                           rt.domain_dir() + (ctl ? " yet" : ""));
        if (ctl->version != kControlVersion)
          throw Error(Errc::version_mismatch, "the server's control block has version " + std::to_string(ctl->version) +
                                                  ", this client knows " + std::to_string(kControlVersion) +
                                                  "; run a server and clients built together");
        return ctl;
      },
      wait, "is mpod-mp-server running with the same --file-prefix and --runtime-dir?");
}

// Claims slot `id`: free, or left by a client that finished, left or died.
ClientSlot& claim_slot(Runtime& rt, Control& ctl, uint32_t id) {
  ClientSlot& s = ctl.slots[id];
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  for (;;) {
    uint32_t st = s.state.load(std::memory_order_acquire);
    bool takeable = st == kFree || st == kDone || st == kLeft;
    bool from_dead = false;
    if (st == kAttached && !is_alive(rt, s.process_id)) takeable = from_dead = true;
    if (st == kClaiming && Clock::now() >= deadline) takeable = from_dead = true;  // its claimer died while claiming
    if (st == kAttached && !takeable)
      throw Error(Errc::already_exists, "client id " + std::to_string(id) + " is already attached (pid " +
                                            std::to_string(s.pid) + ", host " + s.hostname +
                                            "); give each client its own --client-id");
    if (takeable && s.state.compare_exchange_strong(st, kClaiming, std::memory_order_acquire)) {
      if (from_dead) s.died_before.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const ProcessInfo& me = rt.self();
  s.pid = me.pid;
  std::memcpy(s.process_id, me.id.bytes.data(), 16);
  std::snprintf(s.hostname, sizeof s.hostname, "%s", me.hostname.c_str());
  s.state.store(kAttached, std::memory_order_release);
  return s;
}

class Client {
 public:
  Client(Runtime& rt, Control& ctl, ClientSlot& slot, uint32_t id, uint32_t burst)
      : rt_(rt), ctl_(ctl), slot_(slot), id_(id), burst_(burst), clients_(ctl.clients),
        ring_(Ring::lookup(rt, ring_name(id))), pool_(Mempool::lookup(rt, kPoolName)), rx_base_(slot.rx.load()) {}

  // Receives until the server says finish and the ring is empty. Returns false
  // if it stopped for another reason (signal, server gone).
  bool run() {
    void* bufs[kMaxBurst];
    examples::Backoff backoff;
    bool finishing = false;
    // When this idle spell began; read from the clock only once the ring is
    // found empty, so a busy client makes no clock call per burst.
    bool idle = false;
    Clock::time_point idle_since{};
    for (;;) {
      const unsigned n = ring_.dequeue_burst(bufs, burst_);
      if (n == 0) {
        if (finishing) return true;  // everything enqueued before `finish` has been taken
        if (StopSignals::requested()) {
          std::printf("client %u: stopped by signal %d before the server said finish\n", id_, StopSignals::signal());
          return false;
        }
        if (ctl_.finish.load(std::memory_order_acquire)) {
          finishing = true;
          continue;
        }
        if (!idle) {
          idle = true;
          idle_since = Clock::now();
        }
        if (Clock::now() - idle_since > std::chrono::seconds(1)) {
          idle_since = Clock::now();
          if (!primary_alive(rt_)) {
            std::fprintf(stderr, "client %u: error: the server (primary) is gone without saying finish; "
                         "restart the server and its clients\n", id_);
            server_gone_ = true;
            return false;
          }
        }
        backoff.idle();
        continue;
      }
      backoff.reset();
      idle = false;
      handle(bufs, n);
    }
  }

  // Gives back cached buffers and tells the server (done or left).
  void detach(bool finished) {
    pool_.flush_thread_cache();
    slot_.state.store(finished ? kDone : kLeft, std::memory_order_release);
  }

  uint64_t rx() const { return rx_; }
  // Shortest and longest payload of the good packets; min > max if none.
  uint32_t min_len() const { return min_len_; }
  uint32_t max_len() const { return max_len_; }
  uint64_t bad() const { return bad_; }
  bool server_gone() const { return server_gone_; }

 private:
  void handle(void** bufs, unsigned n) {
    unsigned keep = 0;  // buffers to give back: every one that belongs to the pool
    for (unsigned i = 0; i < n; ++i) {
      if (!pool_.contains(bufs[i])) {
        report_bad(bufs[i], "not a buffer of the pool", false);
        continue;
      }
      Verdict v = verify_packet(bufs[i], clients_, id_, &last_seq_, rx_ + i == 0);
      if (v != Verdict::ok) {
        report_bad(bufs[i], verdict_name(v), true);
      } else {
        const uint32_t len = static_cast<const PacketHeader*>(bufs[i])->len;
        min_len_ = std::min(min_len_, len);
        max_len_ = std::max(max_len_, len);
      }
      bufs[keep++] = bufs[i];
    }
    if (keep) pool_.put_bulk(bufs, keep);
    rx_ += n;
    slot_.rx.store(rx_base_ + rx_, std::memory_order_relaxed);
  }

  void report_bad(const void* buf, const char* why, bool readable) {
    ++bad_;
    slot_.bad.store(bad_, std::memory_order_relaxed);
    if (bad_ > kBadShown) return;
    if (!readable) {
      std::fprintf(stderr, "client %u: bad packet at %p: %s\n", id_, buf, why);
      return;
    }
    const auto* h = static_cast<const PacketHeader*>(buf);
    std::fprintf(stderr, "client %u: bad packet seq=%llu len=%u flow hash %u -> client %u of %u: %s\n", id_,
                 static_cast<unsigned long long>(h->seq), h->len, flow_hash(h->flow), flow_hash(h->flow) % clients_,
                 clients_, why);
  }

  Runtime& rt_;
  Control& ctl_;
  ClientSlot& slot_;
  uint32_t id_, burst_, clients_;
  Ring ring_;
  Mempool pool_;
  uint64_t rx_base_;  // what earlier clients with this id received
  uint64_t rx_ = 0, bad_ = 0, last_seq_ = 0;
  uint32_t min_len_ = UINT32_MAX, max_len_ = 0;
  bool server_gone_ = false;
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
    Options o;
    int first = parse_options(argc, argv, o);
    Config c = parse(argc, argv, first);
    if (!proc_type_given(argc, argv, first)) o.proc_type = ProcType::secondary;
    if (o.proc_type == ProcType::primary)
      throw examples::UsageError("a client is a secondary: drop --proc-type=primary");
    auto rt = Runtime::start(o);
    if (rt->role() != Role::secondary)
      throw Error(Errc::not_found, "no mpod-mp-server runs with prefix '" + o.file_prefix + "' in " +
                                       rt->domain_dir() + " (--proc-type=auto made this client the primary); "
                                       "start the server, or give the client --wait-primary=SECONDS");
    Control& ctl = find_control(*rt);
    const uint32_t id = uint32_t(c.id);
    if (id >= ctl.clients)
      throw Error(Errc::invalid_argument, "--client-id " + std::to_string(id) + " is out of range: the server runs " +
                                              std::to_string(ctl.clients) + " clients, ids 0.." +
                                              std::to_string(ctl.clients - 1));
    ClientSlot& slot = claim_slot(*rt, ctl, id);
    StopSignals::arm();
    Client client(*rt, ctl, slot, id, uint32_t(c.burst));
    std::printf("client %u: attached (pid %d, host %s), receiving from %s\n", id, rt->self().pid,
                rt->self().hostname.c_str(), ring_name(id).c_str());
    const bool finished = client.run();
    client.detach(finished);
    if (client.min_len() <= client.max_len())
      std::printf("client %u: payloads of %u..%u bytes\n", id, client.min_len(), client.max_len());
    std::printf("summary role=client id=%u rx=%llu bad=%llu pid=%d\n", id,
                static_cast<unsigned long long>(client.rx()), static_cast<unsigned long long>(client.bad()),
                rt->self().pid);
    return client.bad() || client.server_gone() ? 1 : 0;
  } catch (const examples::UsageError& u) {
    std::fprintf(stderr, "mpod-mp-client: %s\n%s", u.what(), usage());
    return 2;
  } catch (const Error& err) {
    std::fprintf(stderr, "mpod-mp-client: error: %s\n", err.what());
    return 1;
  }
}
