// mpod-test-chaos: the primary and the pods of the chaos test
// (tests/integration/chaos_test.cpp; longer runs: scripts/chaos.sh).
//
//   mpod-test-chaos [--hostname=NAME] MODE [runtime options] [-- MODE ARGS]
//
// primary --pool=N --records=R
//         creates the objects (mempool chaos_pool of N objects, rings chaos_pass and
//         chaos_blocks, heap chaos_heap) and the ledger (memzone chaos_ledger: one record
//         per pod incarnation, 0..R-1), answers chaos.echo, prints READY. Each SIGUSR1
//         runs the next step: 1 tells the pods to quiesce, 2 checks every object and the
//         accounting (CHECK lines, then CHECK-DONE failures=N), 3 tells the pods to
//         exit. SIGTERM ends it.
// pod     --slot=S --incarnation=K --seed=X --timeout-ms=MS --hang-ms=MS [--gate=FIFO]
//         with --gate, prints GATE and waits until a byte arrives through FIFO (the test
//         starts a pod ahead of time and releases it into its attach when it wants one);
//         prints ATTACHING just before Runtime::start and ATTACHED start_us=... just
//         after (how the test tells a kill inside the attach from one after it), then
//         READY; then, until told to quiesce, random traffic: mempool get/put, objects
//         passed to other pods through the MP/MC ring chaos_pass, heap
//         alloc/zalloc/realloc/free, heap blocks passed through chaos_blocks, memzone
//         reserve/free, channel requests to the primary, to a peer and to all. Every
//         object and block is stamped with its holder and a pattern, and checked by
//         whoever takes it next. Quiescing gives everything back (QUIESCED); it exits
//         when told (POD-EXIT), 2 if it saw anything wrong.
//
// The ledger record of a pod is how the check knows, after a SIGKILL, what the
// dead pod held and which call it was in (see "Accounting" in Check below).
// A pod's watchdog prints STALL when one call has lasted a second, and HANG
// (then exits 3) when it has lasted --hang-ms: which call, which ring and
// side, and the ring's counts.
//
// Exit codes: 0 fine, 1 mpod::Error, 2 a check failed, 3 hang, 5 the primary went away.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mpod/heap.hpp"
#include "mpod/mempool.hpp"
#include "mpod/ring.hpp"
#include "mpod/runtime.hpp"
#include "tests/helpers/proc_common.hpp"

namespace {

using namespace mpod;

// ---- names and sizes, shared by the primary and the pods ----

constexpr const char* kLedgerName = "chaos_ledger";
constexpr const char* kPoolName = "chaos_pool";
constexpr const char* kPoolRingName = "MP_chaos_pool";  // the pool's common ring (Mempool: "MP_<name>")
constexpr const char* kPassName = "chaos_pass";         // pool objects from pod to pod
constexpr const char* kBlocksName = "chaos_blocks";     // heap blocks from pod to pod
constexpr const char* kHeapName = "chaos_heap";
constexpr const char* kEcho = "chaos.echo";

constexpr uint32_t kObjSize = 128;
constexpr uint32_t kCacheSize = 16;
// What one cache slot can hold: Mempool gives each cache 3 x cache_size slots
// (src/objects/mempool.cpp). A dead process's cache is given back by the next
// lookup; a lookup killed half-way through that can lose at most one cache.
constexpr uint32_t kCacheCap = 3 * kCacheSize;
// A put that takes a cache past 1.5 x cache_size flushes it: the cache lets
// go of what it held before the ring takes it, so a put killed there loses
// up to that many objects besides its own (MempoolOptions::cache_size).
constexpr uint32_t kCacheFlushAt = kCacheSize * 3 / 2;
constexpr uint32_t kMaxBulk = 8;    // objects per pool call
constexpr uint32_t kMaxPass = 4;    // objects per pass-ring call
constexpr uint32_t kMaxHeld = 24;   // pool objects a pod holds at most
constexpr uint32_t kMaxBlocks = 8;  // heap blocks a pod holds at most
constexpr uint32_t kPassCapacity = 256;
constexpr uint32_t kBlocksCapacity = 64;
constexpr uint64_t kInRing = 1ull << 63;  // holder word of an object or block sitting in a ring: kInRing | sender

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Output is a file the test reads while we run: every line goes out at once.
[[gnu::format(printf, 1, 2)]] void say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::fflush(stdout);
}

// ---- the calls a pod makes, as its record names them ----

enum Phase : uint32_t {
  kIdle,
  kPoolLookup,  // Mempool::lookup, which gives back dead processes' caches
  kPoolGet,
  kPoolPut,
  kPoolReclaim,  // Mempool::reclaim_dead_caches
  kPassEnq,
  kPassDeq,
  kHeapAlloc,
  kHeapRealloc,
  kHeapFree,
  kBlocksEnq,
  kBlocksDeq,
  kMzReserve,
  kMzFree,
  kChanPrimary,
  kChanPeer,
  kChanAll,
  kPhases
};

struct PhaseInfo {
  const char* call;
  const char* ring;  // the ring the call may wait on, or nullptr
  const char* side;
};
constexpr PhaseInfo kPhaseInfo[kPhases] = {
    {"its own code between calls", nullptr, nullptr},
    {"Mempool::lookup (giving back dead caches)", kPoolRingName, "producers"},
    {"Mempool::get_bulk", kPoolRingName, "consumers"},
    {"Mempool::put_bulk", kPoolRingName, "producers"},
    {"Mempool::reclaim_dead_caches", kPoolRingName, "producers"},
    {"Ring::enqueue_bulk", kPassName, "producers"},
    {"Ring::dequeue_burst", kPassName, "consumers"},
    {"Heap::alloc/zalloc", nullptr, nullptr},
    {"Heap::realloc", nullptr, nullptr},
    {"Heap::free", nullptr, nullptr},
    {"Ring::enqueue_bulk", kBlocksName, "producers"},
    {"Ring::dequeue_burst", kBlocksName, "consumers"},
    {"Memzones::reserve", nullptr, nullptr},
    {"Memzones::free", nullptr, nullptr},
    {"Channel::request to the primary", nullptr, nullptr},
    {"Channel::request to a peer", nullptr, nullptr},
    {"Channel::request_all", nullptr, nullptr},
};

bool is_ring_or_pool_call(uint32_t p) {
  return p == kPoolGet || p == kPoolPut || p == kPassEnq || p == kPassDeq || p == kBlocksEnq || p == kBlocksDeq ||
         p == kPoolLookup || p == kPoolReclaim;
}

enum Counter : uint32_t {
  kOps,
  kGot,
  kPut,
  kPassed,
  kReceived,
  kAllocs,
  kReallocs,
  kFrees,
  kBlocksPassed,
  kBlocksReceived,
  kMzReserved,
  kMzFreed,
  kChanPrimaryOk,
  kChanPeerOk,
  kChanPeerDead,
  kChanPeerNoHandler,
  kChanAllOk,
  kAllocFailed,  // the heap was out of memory: allowed, counted
  kBad,          // anything found wrong: a damaged object, a wrong reply, a refused put...
  kClashes,      // an object or block taken while another process held it
  kCounters
};
constexpr const char* kCounterName[kCounters] = {"ops",
                                                 "got",
                                                 "put",
                                                 "passed",
                                                 "received",
                                                 "allocs",
                                                 "reallocs",
                                                 "frees",
                                                 "blocks_passed",
                                                 "blocks_received",
                                                 "mz_reserved",
                                                 "mz_freed",
                                                 "chan_primary",
                                                 "chan_peer",
                                                 "chan_peer_dead",
                                                 "chan_peer_no_handler",
                                                 "chan_all",
                                                 "alloc_failed",
                                                 "bad",
                                                 "clashes"};

enum PodState : uint32_t { kUnused, kAttached, kReady, kQuiesced, kExited };
enum MzState : uint32_t { kMzNone, kMzReserving, kMzHeld, kMzFreeing };
enum Command : uint32_t { kRun, kQuiesce, kRelease };

// One pod incarnation's record. Written only by that pod; read by its
// watchdog and, after the pod is dead or quiesced, by the primary's check.
// What it holds is a stack: a get pushes (entries first, then the count,
// release), a put pops (the count only), so the count is exact at every
// instant and the entries below it never change under a reader.
struct alignas(64) PodRecord {
  std::atomic<uint32_t> state;
  std::atomic<uint32_t> slot;
  std::atomic<uint32_t> phase;    // the call in flight (Phase), kIdle between calls
  std::atomic<uint32_t> phase_n;  // how many objects or blocks that call moves at most
  std::atomic<uint64_t> phase_since_ns;
  std::atomic<uint64_t> progress;  // calls finished
  uint8_t id[16];                  // the pod's process id, to tell it is dead
  std::atomic<uint32_t> nheld;
  std::atomic<uint32_t> nblocks;
  std::atomic<uint64_t> held[kMaxHeld];
  std::atomic<uint64_t> blocks[kMaxBlocks];
  std::atomic<uint32_t> mz_state;  // MzState of memzone cz_<incarnation>_<mz_k>
  std::atomic<uint32_t> mz_k;
  std::atomic<uint64_t> mz_len;
  std::atomic<uint64_t> max_ns[kPhases];  // the longest call of each kind that returned
  std::atomic<uint64_t> count[kCounters];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "records in shared memory need lock-free atomics");

struct Ledger {
  static constexpr uint64_t kMagic = 0x43484f534c454447ull;  // "CHOSLEDG"
  std::atomic<uint64_t> magic;                               // written last (release)
  std::atomic<uint32_t> records;
  std::atomic<uint32_t> command;
  std::atomic<uint64_t> primary_beat_ns;  // CLOCK_MONOTONIC, the same in every PID namespace
  uint8_t primary_id[16];
  static constexpr size_t kHeaderBytes = 128;
  PodRecord* record(uint32_t i) {
    return reinterpret_cast<PodRecord*>(reinterpret_cast<char*>(this) + kHeaderBytes) + i;
  }
  static uint64_t bytes_for(uint32_t records) { return kHeaderBytes + uint64_t(records) * sizeof(PodRecord); }
};

ProcessId id_from(const uint8_t* bytes) {
  ProcessId p;
  std::memcpy(p.bytes.data(), bytes, 16);
  return p;
}

// ---- stamps: what makes a damaged or doubly held object visible ----

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
void fill(void* p, uint64_t len, uint64_t seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (uint64_t i = 0; i < len; i += 8) {
    const uint64_t w = mix(seed + i);
    std::memcpy(b + i, &w, std::min<uint64_t>(8, len - i));
  }
}
bool intact(const void* p, uint64_t len, uint64_t seed) {
  auto* b = static_cast<const unsigned char*>(p);
  for (uint64_t i = 0; i < len; i += 8) {
    const uint64_t w = mix(seed + i);
    if (std::memcmp(b + i, &w, std::min<uint64_t>(8, len - i)) != 0) return false;
  }
  return true;
}

// A pool object: its holder (0 in the pool, a pod's token while held,
// kInRing | sender in chaos_pass), the seed of its payload, the payload.
struct Obj {
  uint64_t holder;
  uint64_t seed;
  unsigned char payload[kObjSize - 16];
};
static_assert(sizeof(Obj) == kObjSize);
std::atomic_ref<uint64_t> holder_of(Obj* o) { return std::atomic_ref<uint64_t>(o->holder); }
bool obj_intact(const Obj* o) { return intact(o->payload, sizeof o->payload, o->seed); }
void obj_stamp(Obj* o, uint64_t seed) {
  o->seed = seed;
  fill(o->payload, sizeof o->payload, seed);
}

// A heap block: holder as above, its size and seed, then the pattern.
struct BlockHead {
  uint64_t holder;
  uint64_t size;  // as asked of the heap, this header included
  uint64_t seed;
  uint64_t reserved;
};
constexpr uint64_t kMinBlock = sizeof(BlockHead);
std::atomic_ref<uint64_t> holder_of(BlockHead* b) { return std::atomic_ref<uint64_t>(b->holder); }
bool block_intact(const BlockHead* b) { return intact(b + 1, b->size - sizeof(BlockHead), b->seed); }

std::string mz_name(uint32_t incarnation, uint32_t k) {
  return "cz_" + std::to_string(incarnation) + "_" + std::to_string(k);
}
uint64_t mz_seed(uint32_t incarnation, uint32_t k) { return mix((uint64_t(incarnation) << 32) | k); }

Ledger* find_ledger(Runtime& rt) {
  auto z = rt.memzones().lookup(kLedgerName);
  if (!z) throw Error(Errc::not_found, "no memzone chaos_ledger: start the chaos primary first");
  auto* l = static_cast<Ledger*>(z->addr);
  for (int i = 0; i < 10000 && l->magic.load(std::memory_order_acquire) != Ledger::kMagic; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (l->magic.load(std::memory_order_acquire) != Ledger::kMagic)
    throw Error(Errc::timed_out, "chaos_ledger was never finished by the primary (10 s)");
  if (z->len < Ledger::bytes_for(l->records.load()))
    throw Error(Errc::corrupt, "chaos_ledger is shorter than its record count says");
  return l;
}

struct Args {
  uint32_t pool = 8192, records = 1024;
  uint32_t slot = 0, incarnation = 0;
  uint64_t seed = 1;
  int timeout_ms = 10000, hang_ms = 20000;
  std::string gate;  // a FIFO to wait on before attaching
};

// Waits at the gate until the test sends a byte through it; a bounded wait,
// so a pod whose test went away does not wait forever.
void wait_at_gate(const std::string& fifo) {
  const int fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw Error(Errc::system, "cannot open the gate " + fifo + ": " + std::strerror(errno), fifo, errno);
  say("GATE\n");
  pollfd p{fd, POLLIN, 0};
  char byte = 0;
  const int ready = poll(&p, 1, 120000);
  const bool opened = ready == 1 && read(fd, &byte, 1) == 1;
  close(fd);
  if (!opened) throw Error(Errc::timed_out, "nobody opened the gate " + fifo + " within 120 s");
}

// ======================================================================
// The pod
// ======================================================================

class Pod {
 public:
  Pod(Runtime& rt, const Args& a)
      : rt_(rt), a_(a), token_(uint64_t(a.incarnation) + 1), rng_(mix(a.seed) ^ a.incarnation) {}

  int run() {
    ledger_ = find_ledger(rt_);
    if (a_.incarnation >= ledger_->records.load())
      throw Error(Errc::invalid_argument, "incarnation " + std::to_string(a_.incarnation) +
                                              " has no record: the ledger has " +
                                              std::to_string(ledger_->records.load()) + " (raise --records)");
    r_ = ledger_->record(a_.incarnation);
    if (r_->state.load() != kUnused)
      throw Error(Errc::invalid_argument,
                  "record " + std::to_string(a_.incarnation) + " is taken: incarnations must be unique");
    std::memcpy(r_->id, rt_.self().id.bytes.data(), 16);
    r_->slot.store(a_.slot);
    r_->state.store(kAttached, std::memory_order_release);
    primary_ = id_from(ledger_->primary_id);
    pool_ring_ = Ring::lookup(rt_, kPoolRingName);  // before the watchdog, which reads it
    watchdog_ = std::thread([this] { watch(); });
    begin(kPoolLookup, kCacheCap);
    pool_ = Mempool::lookup(rt_, kPoolName);
    finish();
    pass_ = Ring::lookup(rt_, kPassName);
    blocks_ = Ring::lookup(rt_, kBlocksName);
    heap_ = Heap::lookup(rt_, kHeapName);
    const std::string me = rt_.self().id.hex();
    rt_.channel().register_action(
        kEcho, [me](Incoming& in) { in.reply("echo:" + std::string(in.message().text()) + "|" + me); });
    r_->state.store(kReady, std::memory_order_release);
    say("READY slot=%u incarnation=%u id=%s pid=%d\n", a_.slot, a_.incarnation, me.c_str(), rt_.self().pid);

    for (uint64_t steps = 1; ledger_->command.load(std::memory_order_acquire) == kRun; ++steps) {
      step();
      if (steps % 1024 == 0) check_primary_alive();
      // 2000 calls each: every kind of traffic the check looks for has happened.
      if (steps == 2000) say("WARM incarnation=%u\n", a_.incarnation);
    }
    quiesce();
    wait_for_release();
    stop_watchdog();
    rt_.channel().unregister_action(kEcho);
    r_->state.store(kExited, std::memory_order_release);
    say("POD-EXIT incarnation=%u %s\n", a_.incarnation, counters().c_str());
    return r_->count[kBad].load() + r_->count[kClashes].load() ? 2 : 0;
  }

  ~Pod() { stop_watchdog(); }

 private:
  // ---- the record of the call in flight ----

  void begin(Phase p, uint32_t n) {
    r_->phase_n.store(n, std::memory_order_relaxed);
    r_->phase_since_ns.store(now_ns(), std::memory_order_relaxed);
    r_->phase.store(p, std::memory_order_release);
  }
  // The library call returned: how long it took (what others blocked it for).
  void returned() {
    const uint32_t p = r_->phase.load(std::memory_order_relaxed);
    const uint64_t took = now_ns() - r_->phase_since_ns.load(std::memory_order_relaxed);
    if (took > r_->max_ns[p].load(std::memory_order_relaxed)) r_->max_ns[p].store(took, std::memory_order_relaxed);
  }
  // The record is up to date again: nothing in flight.
  void finish() {
    r_->phase.store(kIdle, std::memory_order_release);
    r_->progress.fetch_add(1, std::memory_order_relaxed);
  }
  void count(Counter c, uint64_t n = 1) { r_->count[c].fetch_add(n, std::memory_order_relaxed); }
  // Something is wrong: counted (the check fails on it) and the first few told.
  [[gnu::format(printf, 2, 3)]] void bad(const char* fmt, ...) {
    count(kBad);
    if (r_->count[kBad].load() + r_->count[kClashes].load() > 10) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    say("BAD incarnation=%u: %s\n", a_.incarnation, buf);
  }
  void clash(const void* what, uint64_t found) {
    count(kClashes);
    if (r_->count[kBad].load() + r_->count[kClashes].load() > 10) return;
    const std::string holder = found == 0 ? "free (in the pool)"
                               : found & kInRing
                                   ? "in a ring, sent by incarnation " + std::to_string((found & ~kInRing) - 1)
                                   : "held by incarnation " + std::to_string(found - 1);
    say("CLASH incarnation=%u: %p was handed to us while its holder word says it is %s\n", a_.incarnation, what,
        holder.c_str());
  }
  uint64_t next_seed() { return mix((token_ << 32) ^ ++seeds_); }
  uint32_t pick(uint32_t n) { return uint32_t(rng_() % n); }  // 0..n-1

  // ---- one random call ----

  void step() {
    // Each kind of call's share of the traffic, as cumulative thousandths;
    // past the last, a yield: a moment for the others (2 CPUs, 9 busy processes).
    static constexpr std::pair<uint32_t, void (Pod::*)()> kMix[] = {
        {200, &Pod::get},         {350, &Pod::put_some},     {450, &Pod::pass_out},        {600, &Pod::pass_in},
        {680, &Pod::heap_alloc},  {700, &Pod::heap_realloc}, {760, &Pod::heap_free},       {800, &Pod::blocks_out},
        {850, &Pod::blocks_in},   {875, &Pod::memzone},      {935, &Pod::request_primary}, {965, &Pod::request_peer},
        {967, &Pod::request_all}, {969, &Pod::reclaim}};
    const uint32_t x = pick(1000);
    const auto call = std::find_if(std::begin(kMix), std::end(kMix), [x](const auto& m) { return x < m.first; });
    try {
      if (call == std::end(kMix))
        std::this_thread::yield();
      else
        (this->*call->second)();
    } catch (const Error& e) {
      bad("%s failed: %s (%s)", kPhaseInfo[r_->phase.load()].call, e.what(), errc_name(e.code()));
      finish();
    }
    count(kOps);
  }

  // ---- mempool objects ----

  void get() {
    const uint32_t have = r_->nheld.load(std::memory_order_relaxed);
    const uint32_t n = 1 + pick(kMaxBulk);
    if (have + n > kMaxHeld) return put(n);
    void* objs[kMaxBulk];
    begin(kPoolGet, n + kCacheSize);  // a get that refills this thread's cache moves up to n + cache_size
    const bool ok = pool_.get_bulk(objs, n);
    returned();
    uint32_t kept = 0;
    if (ok) {
      for (uint32_t i = 0; i < n; ++i) {
        auto* o = static_cast<Obj*>(objs[i]);
        uint64_t free_word = 0;
        if (!holder_of(o).compare_exchange_strong(free_word, token_, std::memory_order_acq_rel)) {
          clash(o, free_word);  // not ours to keep or give back
          continue;
        }
        if (!obj_intact(o))
          bad("object %p came out of the pool damaged (seed %" PRIx64 ")", static_cast<void*>(o), o->seed);
        obj_stamp(o, next_seed());
        r_->held[have + kept++].store(reinterpret_cast<uintptr_t>(o), std::memory_order_relaxed);
      }
      r_->nheld.store(have + kept, std::memory_order_release);
      count(kGot, n);
    }
    finish();
  }

  void put_some() { put(1 + pick(kMaxBulk)); }

  // Gives the top `want` held objects back to the pool.
  void put(uint32_t want) {
    const uint32_t have = r_->nheld.load(std::memory_order_relaxed);
    const uint32_t k = std::min({want, have, kMaxBulk});
    if (k == 0) return;
    void* objs[kMaxBulk];
    for (uint32_t i = 0; i < k; ++i) objs[i] = held_obj(have - k + i);
    begin(kPoolPut, k);
    for (uint32_t i = 0; i < k; ++i) holder_of(static_cast<Obj*>(objs[i])).store(0, std::memory_order_release);
    const unsigned back = pool_.put_bulk(objs, k);
    returned();
    if (back != k) bad("Mempool::put_bulk took back %u of our %u objects", back, k);
    r_->nheld.store(have - k, std::memory_order_release);
    count(kPut, k);
    finish();
  }

  // The held object at `i`, checked: still ours and intact.
  void* held_obj(uint32_t i) {
    auto* o = reinterpret_cast<Obj*>(r_->held[i].load(std::memory_order_relaxed));
    const uint64_t h = holder_of(o).load(std::memory_order_acquire);
    if (h != token_)
      bad("object %p we hold has holder word %" PRIx64 ", not ours (%" PRIx64 ")", static_cast<void*>(o), h, token_);
    if (!obj_intact(o)) bad("object %p changed while we held it", static_cast<void*>(o));
    return o;
  }

  void pass_out() {
    const uint32_t have = r_->nheld.load(std::memory_order_relaxed);
    const uint32_t k = std::min(have, 1 + pick(kMaxPass));
    if (k == 0) return get();
    void* objs[kMaxPass];
    for (uint32_t i = 0; i < k; ++i) objs[i] = held_obj(have - k + i);
    begin(kPassEnq, k);
    for (uint32_t i = 0; i < k; ++i)
      holder_of(static_cast<Obj*>(objs[i])).store(kInRing | token_, std::memory_order_release);
    const unsigned m = pass_.enqueue_bulk(objs, k);
    returned();
    if (m == k) {
      r_->nheld.store(have - k, std::memory_order_release);
      count(kPassed, k);
    } else {  // full: still ours
      for (uint32_t i = 0; i < k; ++i) holder_of(static_cast<Obj*>(objs[i])).store(token_, std::memory_order_release);
    }
    finish();
  }

  void pass_in() {
    const uint32_t have = r_->nheld.load(std::memory_order_relaxed);
    const uint32_t room = kMaxHeld - have;
    if (room == 0) return put(kMaxBulk);
    const uint32_t n = 1 + pick(std::min(room, kMaxPass));
    void* objs[kMaxPass];
    begin(kPassDeq, n);
    const unsigned m = pass_.dequeue_burst(objs, n);
    returned();
    uint32_t kept = 0;
    for (unsigned i = 0; i < m; ++i) {
      auto* o = static_cast<Obj*>(objs[i]);
      if (!pool_.contains(o)) {
        bad("chaos_pass delivered %p, which is not an object of chaos_pool", static_cast<void*>(o));
        continue;
      }
      uint64_t sent = holder_of(o).load(std::memory_order_acquire);
      if (!(sent & kInRing) || !holder_of(o).compare_exchange_strong(sent, token_, std::memory_order_acq_rel)) {
        clash(o, sent);
        continue;
      }
      if (!obj_intact(o)) bad("object %p arrived through chaos_pass damaged", static_cast<void*>(o));
      obj_stamp(o, next_seed());
      r_->held[have + kept++].store(reinterpret_cast<uintptr_t>(o), std::memory_order_relaxed);
    }
    r_->nheld.store(have + kept, std::memory_order_release);
    count(kReceived, m);
    finish();
  }

  void reclaim() {
    begin(kPoolReclaim, kCacheCap);
    pool_.reclaim_dead_caches();
    returned();
    finish();
  }

  // ---- heap blocks ----

  uint64_t block_size() {
    if (pick(64) == 0) return 64 * 1024 + pick(192 * 1024);  // now and then a big one: the heap grows
    return kMinBlock + pick(2048);
  }
  BlockHead* held_block(uint32_t i) {
    auto* b = reinterpret_cast<BlockHead*>(r_->blocks[i].load(std::memory_order_relaxed));
    if (holder_of(b).load(std::memory_order_acquire) != token_)
      bad("heap block %p we hold is not stamped ours", static_cast<void*>(b));
    if (!block_intact(b)) bad("heap block %p changed while we held it", static_cast<void*>(b));
    return b;
  }
  void stamp_block(BlockHead* b, uint64_t size) {
    b->size = size;
    b->seed = next_seed();
    b->reserved = 0;
    fill(b + 1, size - sizeof(BlockHead), b->seed);
    holder_of(b).store(token_, std::memory_order_release);
  }

  void heap_alloc() {
    const uint32_t nb = r_->nblocks.load(std::memory_order_relaxed);
    if (nb == kMaxBlocks) return heap_free();
    const uint64_t size = block_size();
    const bool zero = pick(4) == 0;
    begin(kHeapAlloc, 1);
    void* p = nullptr;
    try {
      p = zero ? heap_.zalloc(size) : heap_.alloc(size, size_t(64) << pick(3));
    } catch (const Error& e) {
      if (e.code() != Errc::no_memory) throw;
      count(kAllocFailed);
    }
    returned();
    if (p) {
      if (zero && !intact_zero(p, size)) bad("Heap::zalloc(%" PRIu64 ") returned %p not zeroed", size, p);
      stamp_block(static_cast<BlockHead*>(p), size);
      r_->blocks[nb].store(reinterpret_cast<uintptr_t>(p), std::memory_order_relaxed);
      r_->nblocks.store(nb + 1, std::memory_order_release);
      count(kAllocs);
    }
    finish();
  }
  static bool intact_zero(const void* p, uint64_t len) {
    auto* b = static_cast<const unsigned char*>(p);
    return std::all_of(b, b + len, [](unsigned char c) { return c == 0; });
  }

  void heap_realloc() {
    const uint32_t nb = r_->nblocks.load(std::memory_order_relaxed);
    if (nb == 0) return heap_alloc();
    BlockHead* b = held_block(nb - 1);
    const uint64_t old_size = b->size, old_seed = b->seed;
    const uint64_t size = block_size();
    begin(kHeapRealloc, 1);
    void* q = nullptr;
    try {
      q = heap_.realloc(b, size);
    } catch (const Error& e) {
      if (e.code() != Errc::no_memory) throw;
      count(kAllocFailed);
    }
    returned();
    if (q) {
      auto* nbk = static_cast<BlockHead*>(q);
      const uint64_t kept = std::min(old_size, size);
      // The contents up to the smaller size moved with it; the header says the old size.
      if (nbk->size != old_size || nbk->seed != old_seed || !intact(nbk + 1, kept - sizeof(BlockHead), old_seed))
        bad("Heap::realloc(%p, %" PRIu64 ") to %p lost the block's contents", static_cast<void*>(b), size, q);
      stamp_block(nbk, size);
      r_->blocks[nb - 1].store(reinterpret_cast<uintptr_t>(q), std::memory_order_release);
      count(kReallocs);
    }
    finish();
  }

  void heap_free() {
    const uint32_t nb = r_->nblocks.load(std::memory_order_relaxed);
    if (nb == 0) return;
    BlockHead* b = held_block(nb - 1);
    begin(kHeapFree, 1);
    if (heap_.size_of(b) != b->size)
      bad("Heap::size_of(%p) is not the %" PRIu64 " bytes asked", static_cast<void*>(b), b->size);
    holder_of(b).store(0, std::memory_order_release);
    heap_.free(b);
    returned();
    r_->nblocks.store(nb - 1, std::memory_order_release);
    count(kFrees);
    finish();
  }

  void blocks_out() {
    const uint32_t nb = r_->nblocks.load(std::memory_order_relaxed);
    const uint32_t k = std::min(nb, 1 + pick(2));
    if (k == 0) return heap_alloc();
    void* bs[2];
    for (uint32_t i = 0; i < k; ++i) bs[i] = held_block(nb - k + i);
    begin(kBlocksEnq, k);
    for (uint32_t i = 0; i < k; ++i)
      holder_of(static_cast<BlockHead*>(bs[i])).store(kInRing | token_, std::memory_order_release);
    const unsigned m = blocks_.enqueue_bulk(bs, k);
    returned();
    if (m == k) {
      r_->nblocks.store(nb - k, std::memory_order_release);
      count(kBlocksPassed, k);
    } else {
      for (uint32_t i = 0; i < k; ++i)
        holder_of(static_cast<BlockHead*>(bs[i])).store(token_, std::memory_order_release);
    }
    finish();
  }

  void blocks_in() {
    const uint32_t nb = r_->nblocks.load(std::memory_order_relaxed);
    if (nb == kMaxBlocks) return heap_free();
    const uint32_t n = 1 + pick(std::min(kMaxBlocks - nb, 2u));
    void* bs[2];
    begin(kBlocksDeq, n);
    const unsigned m = blocks_.dequeue_burst(bs, n);
    returned();
    uint32_t kept = 0;
    for (unsigned i = 0; i < m; ++i) {
      auto* b = static_cast<BlockHead*>(bs[i]);
      uint64_t sent = holder_of(b).load(std::memory_order_acquire);
      if (!(sent & kInRing) || !holder_of(b).compare_exchange_strong(sent, token_, std::memory_order_acq_rel)) {
        clash(b, sent);
        continue;
      }
      // size_of also maps heap regions other pods added since our last heap call.
      if (heap_.size_of(b) != b->size || !block_intact(b))
        bad("heap block %p arrived through chaos_blocks damaged", static_cast<void*>(b));
      r_->blocks[nb + kept++].store(reinterpret_cast<uintptr_t>(b), std::memory_order_relaxed);
    }
    r_->nblocks.store(nb + kept, std::memory_order_release);
    count(kBlocksReceived, m);
    finish();
  }

  // ---- memzones: reserve one, fill it, check it, free it ----

  void memzone() {
    if (r_->mz_state.load(std::memory_order_relaxed) == kMzNone) {
      const uint32_t k = mz_next_++;
      const uint64_t len = 512 + pick(16 * 1024);
      r_->mz_k.store(k, std::memory_order_relaxed);
      r_->mz_len.store(len, std::memory_order_relaxed);
      begin(kMzReserve, 1);
      r_->mz_state.store(kMzReserving, std::memory_order_release);
      Memzone z = rt_.memzones().reserve(mz_name(a_.incarnation, k), len);
      returned();
      fill(z.addr, len, mz_seed(a_.incarnation, k));
      mz_addr_ = z.addr;
      r_->mz_state.store(kMzHeld, std::memory_order_release);
      count(kMzReserved);
      finish();
    } else {
      const uint32_t k = r_->mz_k.load(std::memory_order_relaxed);
      if (!intact(mz_addr_, r_->mz_len.load(std::memory_order_relaxed), mz_seed(a_.incarnation, k)))
        bad("memzone %s changed while we held it", mz_name(a_.incarnation, k).c_str());
      begin(kMzFree, 1);
      r_->mz_state.store(kMzFreeing, std::memory_order_release);
      rt_.memzones().free(mz_name(a_.incarnation, k));
      returned();
      r_->mz_state.store(kMzNone, std::memory_order_release);
      count(kMzFreed);
      finish();
    }
  }

  // ---- the channel ----

  std::string random_text() {
    std::string s(1 + pick(200), ' ');
    for (auto& c : s) c = char('a' + pick(26));
    return s;
  }
  static std::string echo_of(const std::string& text, const ProcessId& from) {
    return "echo:" + text + "|" + from.hex();
  }

  void request_primary() {
    const std::string text = random_text();
    begin(kChanPrimary, 0);
    Replies r = rt_.channel().request(primary_, kEcho, bytes(text), Channel::Timeout(a_.timeout_ms));
    returned();
    finish();
    if (r.replies.size() == 1 && r.replies[0].text() == echo_of(text, primary_)) return count(kChanPrimaryOk);
    if (!r.failures.empty())
      return bad("request to the primary failed: %s %s", peer_error_name(r.failures[0].error),
                 r.failures[0].detail.c_str());
    bad("the primary's reply is not the echo of our request");
  }

  // A failure that a peer being killed or still attaching explains.
  bool expected_peer_failure(const PeerFailure& f) {
    if (f.error == PeerError::dead) return count(kChanPeerDead), true;
    if (f.error == PeerError::no_handler) return count(kChanPeerNoHandler), true;
    return false;
  }

  void request_peer() {
    if (peers_.empty() || pick(50) == 0) refresh_peers();
    if (peers_.empty()) return;
    const ProcessId to = peers_[pick(uint32_t(peers_.size()))];
    const std::string text = random_text();
    begin(kChanPeer, 0);
    Replies r = rt_.channel().request(to, kEcho, bytes(text), Channel::Timeout(a_.timeout_ms));
    returned();
    finish();
    if (r.replies.size() == 1 && r.replies[0].text() == echo_of(text, to)) return count(kChanPeerOk);
    if (r.failures.size() == 1 && expected_peer_failure(r.failures[0])) return refresh_peers();
    if (!r.failures.empty()) {
      // Whether the peer was still there when the request gave up tells a
      // peer that never answered from a death that was never reported.
      const char* state = "not registered";
      for (auto& p : rt_.processes())
        if (p.id == to) state = p.alive ? "registered and alive" : "registered, dead";
      return bad("request to peer %s failed: %s %s (the peer then: %s)", to.short_hex().c_str(),
                 peer_error_name(r.failures[0].error), r.failures[0].detail.c_str(), state);
    }
    bad("peer %s's reply is not the echo of our request", to.short_hex().c_str());
  }

  void request_all() {
    const std::string text = random_text();
    begin(kChanAll, 0);
    Replies r = rt_.channel().request_all(kEcho, bytes(text), Channel::Timeout(a_.timeout_ms));
    returned();
    finish();
    bool primary_answered = false;
    for (auto& m : r.replies) {
      if (m.text() != echo_of(text, m.from)) bad("request_all: %s's reply is not the echo", m.from.short_hex().c_str());
      primary_answered |= m.from == primary_;
    }
    for (auto& f : r.failures)
      if (f.peer == primary_ || !expected_peer_failure(f))
        bad("request_all: %s failed: %s %s", f.peer.short_hex().c_str(), peer_error_name(f.error), f.detail.c_str());
    if (!primary_answered) bad("request_all: no reply from the primary");
    count(kChanAllOk);
  }

  void refresh_peers() {
    peers_.clear();
    for (auto& p : rt_.processes())
      if (p.alive && p.role == Role::secondary && !(p.id == rt_.self().id)) peers_.push_back(p.id);
  }

  // ---- the end of the storm ----

  void quiesce() {
    while (r_->nheld.load() > 0) put(kMaxBulk);
    while (r_->nblocks.load() > 0) heap_free();
    if (r_->mz_state.load() == kMzHeld) memzone();
    pool_.flush_thread_cache();
    r_->state.store(kQuiesced, std::memory_order_release);
    say("QUIESCED incarnation=%u %s\n", a_.incarnation, counters().c_str());
  }

  void wait_for_release() {
    while (ledger_->command.load(std::memory_order_acquire) != kRelease) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      check_primary_alive();
    }
  }

  // Every wait ends: a pod whose primary stopped beating for a minute (the
  // test is gone) leaves instead of running forever.
  void check_primary_alive() {
    const uint64_t beat = ledger_->primary_beat_ns.load(std::memory_order_relaxed);
    if (now_ns() - beat > 60'000'000'000ull) {
      say("PRIMARY-GONE incarnation=%u: the primary's heartbeat stopped %.1f s ago; leaving\n", a_.incarnation,
          double(now_ns() - beat) / 1e9);
      _exit(5);
    }
  }

  std::string counters() const {
    std::string s;
    for (uint32_t c = 0; c < kCounters; ++c)
      s += std::string(c ? " " : "") + kCounterName[c] + "=" + std::to_string(r_->count[c].load());
    return s;
  }

  // ---- the watchdog: no call may hang silently ----

  void watch() {
    uint64_t reported_since = 0, progress = ~0ull, progress_since = now_ns();
    while (!stop_.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const uint32_t p = r_->phase.load(std::memory_order_acquire);
      const uint64_t since = r_->phase_since_ns.load(std::memory_order_relaxed);
      if (r_->progress.load(std::memory_order_relaxed) != progress || r_->state.load() == kQuiesced) {
        progress = r_->progress.load(std::memory_order_relaxed);
        progress_since = now_ns();
      } else if (p == kIdle && now_ns() - progress_since >= uint64_t(a_.hang_ms) * 1000000) {
        hang(kIdle, (now_ns() - progress_since) / 1000000);  // stuck in our own code, between calls
      }
      if (p == kIdle || p >= kPhases) continue;
      const uint64_t ms = (now_ns() - since) / 1000000;
      if (ms >= uint64_t(a_.hang_ms)) hang(p, ms);
      if (ms >= 1000 && since != reported_since) {
        reported_since = since;
        say("STALL incarnation=%u: inside %s for %" PRIu64 " ms%s\n", a_.incarnation, kPhaseInfo[p].call, ms,
            ring_state(p).c_str());
      }
    }
  }

  std::string ring_state(uint32_t p) const {
    const PhaseInfo& info = kPhaseInfo[p];
    if (!info.ring) return "";
    const Ring& r = std::strcmp(info.ring, kPassName) == 0     ? pass_
                    : std::strcmp(info.ring, kBlocksName) == 0 ? blocks_
                                                               : pool_ring_;
    if (!r.valid()) return "";
    char buf[256];
    std::snprintf(buf, sizeof buf, "; ring %s, %s side: count()=%u free_count()=%u capacity=%u lost_to_dead()=%" PRIu64,
                  info.ring, info.side, r.count(), r.free_count(), r.capacity(), r.lost_to_dead());
    return buf;
  }

  [[noreturn]] void hang(uint32_t p, uint64_t ms) {
    say("HANG incarnation=%u slot=%u: inside %s for %" PRIu64
        " ms (limit %d ms)%s. A ring call that never returns "
        "while its ring has room or elements is a claim of a killed process blocking that side (issue 19, item 1)\n",
        a_.incarnation, a_.slot, kPhaseInfo[p].call, ms, a_.hang_ms, ring_state(p).c_str());
    _exit(3);
  }

  void stop_watchdog() {
    stop_.store(true, std::memory_order_release);
    if (watchdog_.joinable()) watchdog_.join();
  }

  Runtime& rt_;
  const Args a_;
  const uint64_t token_;
  std::mt19937_64 rng_;
  Ledger* ledger_ = nullptr;
  PodRecord* r_ = nullptr;
  ProcessId primary_;
  Mempool pool_;
  Ring pool_ring_, pass_, blocks_;
  Heap heap_;
  std::vector<ProcessId> peers_;
  uint32_t mz_next_ = 0;
  void* mz_addr_ = nullptr;
  uint64_t seeds_ = 0;
  std::atomic<bool> stop_{false};
  std::thread watchdog_;
};

// ======================================================================
// The primary and its check
// ======================================================================

// Accounting. After the storm, every live pod has given back all it held,
// so each of the pool's N objects is in exactly one of these places:
//   A  in the pool (its common ring; the pods flushed their caches, and dead
//      pods' caches are given back by lookup / reclaim_dead_caches first);
//   R  in chaos_pass;
//   L  lost inside a ring call of a killed process: Mempool::lost_to_dead()
//      (the pool's ring) + Ring::lost_to_dead() of chaos_pass;
//   H  held by a dead pod, as its record says (nheld of every dead record);
//   W  in a call of a dead pod that returned (or half-returned) before the
//      pod could update its record.
// so  N - A - R = L + H + W  exactly, and W is bounded by the one call each
// dead pod's record shows in flight: a get that moved objects out (pool get:
// n + the cache refill; lookup/reclaim: one cache; dequeue: n) may have them
// unrecorded (W up to +n), a put or enqueue that moved them may still have
// them recorded (W down to -n), and a put that flushed its cache may have
// dropped what the cache held (W up to +1.5 cache_size). Dead pods idle
// between calls add nothing.
// Heap blocks: allocated = in chaos_blocks + held by dead + lost in
// chaos_blocks + W, with W from alloc/realloc/dequeue (+) and free/enqueue (-).
// Memzones: the cz_ memzones present are exactly those dead records hold,
// plus, for a dead pod killed inside reserve or free, maybe that one.
class Check {
 public:
  Check(Runtime& rt, Ledger* l, std::vector<std::string> fixed_zones)
      : rt_(rt), l_(l), fixed_(std::move(fixed_zones)) {}

  void run() {
    try {
      say("CHECK step records\n");
      records();
      say("CHECK step pool\n");
      pool();
      say("CHECK step heap\n");
      heap();
      say("CHECK step memzones\n");
      memzones();
      say("CHECK step pods\n");
      pods();
    } catch (const Error& e) {
      fail("the check stopped at an error: %s (%s)", e.what(), errc_name(e.code()));
    }
    say("FIGURES dead_records=%u dead_in_call=%u lost_pool=%" PRIu64 " lost_pass=%" PRIu64 " lost_blocks=%" PRIu64
        " held_by_dead_objects=%" PRIu64 " held_by_dead_blocks=%" PRIu64 " dead_memzones=%u objects_missing=%" PRIu64
        " objects_slack=%" PRId64 " objects_window=-%" PRIu64 "..+%" PRIu64 " blocks_slack=%" PRId64
        " blocks_window=-%" PRIu64 "..+%" PRIu64 " heap_repairs=%" PRIu64
        " heap_regions=%u max_ring_call_ms=%.1f"
        " max_ring_call=%s max_heap_call_ms=%.1f max_memzone_call_ms=%.1f max_channel_call_ms=%.1f\n",
        uint32_t(dead_.size()), dead_in_call_, lost_pool_, lost_pass_, lost_blocks_, held_objs_, held_blocks_,
        dead_zones_, missing_, objects_slack_, win_.obj_down, win_.obj_up, blocks_slack_, win_.blk_down, win_.blk_up,
        repairs_, regions_, max_ms(kPoolLookup, kBlocksDeq, true), max_ring_name_.c_str(),
        max_ms(kHeapAlloc, kHeapFree), max_ms(kMzReserve, kMzFree), max_ms(kChanPrimary, kChanAll));
    say("CHECK-DONE failures=%u\n", failures_);
  }

 private:
  [[gnu::format(printf, 2, 3)]] void fail(const char* fmt, ...) {
    ++failures_;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (failures_ <= 40) say("CHECK-FAILED %s\n", buf);
  }

  struct Windows {
    uint64_t obj_up = 0, obj_down = 0, blk_up = 0, blk_down = 0, cache_stale = 0;
  };

  // Which records are of dead pods, and what their calls in flight allow.
  void records() {
    std::set<std::string> alive;
    uint32_t live_secondaries = 0;
    for (auto& p : rt_.processes())
      if (p.alive) {
        alive.insert(p.id.hex());
        live_secondaries += p.role == Role::secondary;
      }
    uint32_t quiesced = 0;
    for (uint32_t i = 0; i < l_->records.load(); ++i) {
      PodRecord* r = l_->record(i);
      const uint32_t st = r->state.load(std::memory_order_acquire);
      if (st == kUnused) continue;
      if (st == kQuiesced) {
        ++quiesced;
        if (r->nheld.load() || r->nblocks.load() || r->mz_state.load() != kMzNone)
          fail("incarnation %u quiesced but still holds %u objects, %u blocks, memzone state %u", i, r->nheld.load(),
               r->nblocks.load(), r->mz_state.load());
        continue;
      }
      if (st != kAttached && st != kReady) {
        fail("incarnation %u is in state %u at the check: nobody should have exited yet", i, st);
        continue;
      }
      if (alive.count(id_from(r->id).hex())) {
        fail("incarnation %u (%s) is alive but did not quiesce", i, id_from(r->id).short_hex().c_str());
        continue;
      }
      dead_.push_back(i);
      add_window(i, r);
    }
    if (quiesced != live_secondaries)
      fail("%u pods quiesced but %u secondaries are alive: a pod is missing from the ledger or did not quiesce",
           quiesced, live_secondaries);
    say("CHECK records live=%u dead=%zu dead_in_call=%u\n", quiesced, dead_.size(), dead_in_call_);
  }

  void add_window(uint32_t i, PodRecord* r) {
    const uint32_t p = r->phase.load(), n = r->phase_n.load();
    dead_in_call_ += p != kIdle;
    switch (p) {
      case kPoolGet:
      case kPassDeq:
        win_.obj_up += n;
        break;
      case kPoolLookup:
      case kPoolReclaim:
        win_.obj_up += n;
        win_.cache_stale += n;
        break;
      case kPoolPut:
        win_.obj_down += n;
        win_.obj_up += kCacheFlushAt;
        top_unsure_objs_[i] = n;
        break;
      case kPassEnq:
        win_.obj_down += n;
        top_unsure_objs_[i] = n;
        break;
      case kHeapAlloc:
      case kBlocksDeq:
        win_.blk_up += n;
        break;
      case kHeapRealloc:
        win_.blk_up += n;
        top_unsure_blocks_[i] = n;
        break;
      case kHeapFree:
      case kBlocksEnq:
        win_.blk_down += n;
        top_unsure_blocks_[i] = n;
        break;
      default:
        break;
    }
  }

  uint64_t token_of(uint32_t incarnation) const { return uint64_t(incarnation) + 1; }

  // Pops everything `r` holds, giving up after `limit` of emptiness while count() says otherwise.
  template <typename Fn>
  void drain(Ring& r, const char* name, Fn&& each) {
    void* objs[256];
    uint64_t empty_since = 0;
    for (;;) {
      const unsigned m = r.dequeue_burst(objs, 256);
      for (unsigned i = 0; i < m; ++i) each(objs[i]);
      if (m) {
        empty_since = 0;
        continue;
      }
      if (r.count() == 0) return;
      if (!empty_since) empty_since = now_ns();
      if (now_ns() - empty_since > 5'000'000'000ull) {
        fail("ring %s: count()=%u but dequeue_burst has found nothing for 5 s (lost_to_dead()=%" PRIu64
             "): a claim of a killed process blocks its consumers",
             name, r.count(), r.lost_to_dead());
        return;
      }
      std::this_thread::yield();
    }
  }

  void pool() {
    Mempool mp = Mempool::lookup(rt_, kPoolName);  // gives back dead pods' caches
    mp.reclaim_dead_caches();
    Ring common = Ring::lookup(rt_, kPoolRingName), pass = Ring::lookup(rt_, kPassName);
    const uint32_t n = mp.size();
    const uint32_t available = mp.available();
    std::unordered_map<uintptr_t, uint32_t> index;
    mp.for_each([&](void* o, uint32_t i) { index[reinterpret_cast<uintptr_t>(o)] = i; });
    enum Where : uint8_t { kNowhere, kInPool, kInPass, kHeldByDead };
    static constexpr const char* kWhere[] = {"nowhere", "the pool", "chaos_pass", "a dead pod's record"};
    std::vector<uint8_t> where(n, kNowhere);
    std::vector<void*> found;
    uint64_t in_pool = 0, in_pass = 0;
    auto place = [&](void* p, Where w, const char* from) -> Obj* {
      auto it = index.find(reinterpret_cast<uintptr_t>(p));
      if (it == index.end()) {
        fail("%s holds %p, which is not an object of chaos_pool", from, p);
        return nullptr;
      }
      if (where[it->second] != kNowhere) {
        fail("object #%u (%p) is in %s and in %s: held twice", it->second, p, kWhere[where[it->second]], kWhere[w]);
        return nullptr;
      }
      where[it->second] = w;
      return static_cast<Obj*>(p);
    };
    drain(common, kPoolRingName, [&](void* p) {
      Obj* o = place(p, kInPool, "the pool");
      if (!o) return;
      ++in_pool;
      found.push_back(p);
      if (holder_of(o).load() != 0)
        fail("object %p is in the pool but stamped held (%" PRIx64 ")", p, holder_of(o).load());
      if (!obj_intact(o)) fail("object %p in the pool is damaged", p);
    });
    drain(pass, kPassName, [&](void* p) {
      Obj* o = place(p, kInPass, kPassName);
      if (!o) return;
      ++in_pass;
      found.push_back(p);
      if (!(holder_of(o).load() & kInRing))
        fail("object %p is in chaos_pass but not stamped as sent (%" PRIx64 ")", p, holder_of(o).load());
      if (!obj_intact(o)) fail("object %p in chaos_pass is damaged", p);
    });
    for (uint32_t i : dead_) {
      PodRecord* r = l_->record(i);
      const uint32_t nheld = std::min(r->nheld.load(), kMaxHeld);
      held_objs_ += nheld;
      const uint32_t sure = nheld - std::min(nheld, top_unsure_objs_[i]);  // the rest may be back already
      for (uint32_t k = 0; k < sure; ++k) {
        void* p = reinterpret_cast<void*>(r->held[k].load());
        Obj* o = place(p, kHeldByDead, "a dead pod's record");
        if (!o) continue;
        if (holder_of(o).load() != token_of(i))
          fail("object %p held by dead incarnation %u is stamped %" PRIx64, p, i, holder_of(o).load());
        else if (!obj_intact(o))
          fail("object %p held by dead incarnation %u is damaged", p, i);
      }
    }
    lost_pool_ = mp.lost_to_dead();
    lost_pass_ = pass.lost_to_dead();
    missing_ = n - in_pool - in_pass;
    objects_slack_ = int64_t(missing_) - int64_t(lost_pool_ + lost_pass_ + held_objs_);
    say("CHECK pool size=%u in_pool=%" PRIu64 " in_pass=%" PRIu64 " missing=%" PRIu64 " = lost_pool %" PRIu64
        " + lost_pass %" PRIu64 " + held_by_dead %" PRIu64 " + slack %" PRId64 " (window -%" PRIu64 "..+%" PRIu64 ")\n",
        n, in_pool, in_pass, missing_, lost_pool_, lost_pass_, held_objs_, objects_slack_, win_.obj_down, win_.obj_up);
    if (objects_slack_ > int64_t(win_.obj_up) || -objects_slack_ > int64_t(win_.obj_down))
      fail("pool accounting: %" PRIu64 " objects are missing, lost_to_dead and dead pods' records account for %" PRIu64
           ", off by %" PRId64 ", beyond what the dead pods' calls in flight could hold (-%" PRIu64 "..+%" PRIu64 ")",
           missing_, lost_pool_ + lost_pass_ + held_objs_, objects_slack_, win_.obj_down, win_.obj_up);
    if (available < in_pool || available - in_pool > win_.cache_stale)
      fail("Mempool::available() said %u before the drain, but the pool's ring gave %" PRIu64
           " (dead caches given back first)",
           available, in_pool);
    if (pass.count() != 0 || common.count() != 0)
      fail("rings not empty after the drain: pass %u, pool %u", pass.count(), common.count());
    round_trip(pass, kPassName, found);
    // Everything back in the pool, as it was.
    for (void* p : found) holder_of(static_cast<Obj*>(p)).store(0);
    for (size_t at = 0; at < found.size(); at += Mempool::kMaxBulk) {
      const unsigned k = unsigned(std::min<size_t>(Mempool::kMaxBulk, found.size() - at));
      if (common.enqueue_bulk(found.data() + at, k) != k) fail("the pool's ring refused its own objects back");
    }
    const uint64_t stale = available > in_pool ? available - in_pool : 0;  // counted in dead caches no get can reach
    if (mp.available() != found.size() + stale)
      fail("available() is %u after giving back %zu objects (%" PRIu64 " more in stale caches)", mp.available(),
           found.size(), stale);
  }

  // A ring still moves elements in order after the storm.
  void round_trip(Ring& r, const char* name, const std::vector<void*>& some) {
    const unsigned k = unsigned(std::min<size_t>(some.size(), 32));
    if (k == 0) return;
    std::vector<void*> back(k);
    if (r.enqueue_bulk(some.data(), k) != k || r.dequeue_bulk(back.data(), k) != k ||
        !std::equal(back.begin(), back.end(), some.begin()))
      fail("ring %s: %u elements enqueued did not come back out in order", name, k);
  }

  void heap() {
    Heap hp = Heap::lookup(rt_, kHeapName);
    Ring ring = Ring::lookup(rt_, kBlocksName);
    const HeapStats before = hp.stats();  // takes the lock over (and repairs) if a dead pod held it
    check_heap(hp, "before the drain");
    uint64_t in_ring = 0, freed = 0;
    std::set<uintptr_t> seen;
    std::vector<void*> to_free;
    auto verify = [&](void* p, const char* where, uint64_t want_holder) {
      if (!seen.insert(reinterpret_cast<uintptr_t>(p)).second)
        return fail("heap block %p is held twice (%s)", p, where), false;
      auto* b = static_cast<BlockHead*>(p);
      try {
        if (hp.size_of(p) != b->size)
          return fail("heap block %p (%s): size_of is not its recorded size", p, where), false;
      } catch (const Error& e) {
        return fail("heap block %p (%s): %s", p, where, e.what()), false;
      }
      const uint64_t h = holder_of(b).load();
      if (want_holder ? h != want_holder : !(h & kInRing)) fail("heap block %p (%s) is stamped %" PRIx64, p, where, h);
      if (!block_intact(b)) fail("heap block %p (%s) is damaged", p, where);
      to_free.push_back(p);
      return true;
    };
    std::vector<void*> passed;
    drain(ring, kBlocksName, [&](void* p) {
      ++in_ring;
      passed.push_back(p);
      verify(p, kBlocksName, 0);
    });
    for (uint32_t i : dead_) {
      PodRecord* r = l_->record(i);
      const uint32_t nb = std::min(r->nblocks.load(), kMaxBlocks);
      held_blocks_ += nb;
      const uint32_t sure = nb - std::min(nb, top_unsure_blocks_[i]);
      for (uint32_t k = 0; k < sure; ++k)
        verify(reinterpret_cast<void*>(r->blocks[k].load()), "held by a dead pod", token_of(i));
    }
    lost_blocks_ = ring.lost_to_dead();
    const uint64_t allocated = before.allocated_blocks;
    blocks_slack_ = int64_t(allocated) - int64_t(in_ring + held_blocks_ + lost_blocks_);
    say("CHECK heap allocated_blocks=%" PRIu64 " = in_ring %" PRIu64 " + held_by_dead %" PRIu64
        " + lost_blocks %" PRIu64 " + slack %" PRId64 " (window -%" PRIu64 "..+%" PRIu64 ") repairs=%" PRIu64
        " regions=%u\n",
        allocated, in_ring, held_blocks_, lost_blocks_, blocks_slack_, win_.blk_down, win_.blk_up, before.repairs,
        before.regions);
    if (blocks_slack_ > int64_t(win_.blk_up) || -blocks_slack_ > int64_t(win_.blk_down))
      fail("heap accounting: %" PRIu64
           " blocks allocated, chaos_blocks, lost_to_dead and dead pods' records account for %" PRIu64
           ", off by %" PRId64 " (window -%" PRIu64 "..+%" PRIu64 ")",
           allocated, in_ring + held_blocks_ + lost_blocks_, blocks_slack_, win_.blk_down, win_.blk_up);
    round_trip(ring, kBlocksName, passed);
    for (void* p : to_free) {
      holder_of(static_cast<BlockHead*>(p)).store(0);
      try {
        hp.free(p);
        ++freed;
      } catch (const Error& e) {
        fail("freeing heap block %p: %s", p, e.what());
      }
    }
    check_heap(hp, "after freeing what the ring and the dead pods held");
    const HeapStats after = hp.stats();
    if (after.allocated_blocks != allocated - freed)
      fail("heap: %" PRIu64 " blocks allocated, %" PRIu64 " freed, %u left", allocated, freed, after.allocated_blocks);
    repairs_ = after.repairs;
    regions_ = after.regions;
  }

  void check_heap(Heap& heap, const char* when) {
    try {
      heap.check();
    } catch (const Error& e) {
      fail("Heap::check %s: %s", when, e.what());
    }
  }

  void memzones() {
    std::set<uint32_t> dead(dead_.begin(), dead_.end());
    std::set<uint32_t> present;
    std::vector<std::string> ours;
    for (auto& z : rt_.memzones().list()) {
      uint32_t inc = 0, k = 0;
      if (std::sscanf(z.name.c_str(), "cz_%u_%u", &inc, &k) != 2) {
        const bool heap_region = z.name.starts_with(std::string("HP_") + kHeapName);
        if (!heap_region && std::find(fixed_.begin(), fixed_.end(), z.name) == fixed_.end())
          fail("memzone %s: nobody made it", z.name.c_str());
        continue;
      }
      ours.push_back(z.name);
      PodRecord* r = inc < l_->records.load() ? l_->record(inc) : nullptr;
      const uint32_t st = r ? r->mz_state.load() : kMzNone;
      if (!r || !dead.count(inc) || r->mz_k.load() != k || st == kMzNone) {
        fail("memzone %s is left but no dead pod's record holds it (incarnation %u: %s, memzone state %u, k %u)",
             z.name.c_str(), inc, dead.count(inc) ? "dead" : "not dead", st, r ? r->mz_k.load() : 0);
        continue;
      }
      present.insert(inc);
      if (st == kMzHeld && (z.len < r->mz_len.load() || !intact(z.addr, r->mz_len.load(), mz_seed(inc, k))))
        fail("memzone %s held by dead incarnation %u is damaged", z.name.c_str(), inc);
    }
    for (uint32_t i : dead_)
      if (l_->record(i)->mz_state.load() == kMzHeld && !present.count(i))
        fail("dead incarnation %u held memzone %s, which is gone", i, mz_name(i, l_->record(i)->mz_k.load()).c_str());
    dead_zones_ = uint32_t(ours.size());
    for (auto& name : ours) rt_.memzones().free(name);
    say("CHECK memzones left_by_dead=%u freed\n", dead_zones_);
  }

  void pods() {
    uint64_t total[kCounters] = {};
    for (uint32_t i = 0; i < l_->records.load(); ++i) {
      PodRecord* r = l_->record(i);
      if (r->state.load() == kUnused) continue;
      for (uint32_t c = 0; c < kCounters; ++c) total[c] += r->count[c].load();
      if (r->count[kBad].load() || r->count[kClashes].load())
        fail("incarnation %u saw %" PRIu64 " bad things and %" PRIu64 " clashes (its output says which)", i,
             r->count[kBad].load(), r->count[kClashes].load());
      for (uint32_t p = 0; p < kPhases; ++p)
        if (r->max_ns[p].load() > max_ns_[p]) {
          max_ns_[p] = r->max_ns[p].load();
          if (is_ring_or_pool_call(p) && max_ns_[p] >= max_ring_ns_) {
            max_ring_ns_ = max_ns_[p];
            max_ring_name_ = std::string(kPhaseInfo[p].call) + "@" + kPhaseInfo[p].ring;
          }
        }
    }
    std::string s;
    for (uint32_t c = 0; c < kCounters; ++c) s += std::string(" ") + kCounterName[c] + "=" + std::to_string(total[c]);
    say("CHECK traffic%s\n", s.c_str());
    if (total[kGot] == 0 || total[kReceived] == 0 || total[kAllocs] == 0 || total[kBlocksReceived] == 0 ||
        total[kMzReserved] == 0 || total[kChanPrimaryOk] == 0)
      fail("some kind of traffic never happened: got=%" PRIu64 " received=%" PRIu64 " allocs=%" PRIu64
           " blocks_received=%" PRIu64 " mz_reserved=%" PRIu64 " chan_primary=%" PRIu64,
           total[kGot], total[kReceived], total[kAllocs], total[kBlocksReceived], total[kMzReserved],
           total[kChanPrimaryOk]);
  }

  double max_ms(uint32_t from, uint32_t to, bool rings_only = false) const {
    uint64_t m = 0;
    for (uint32_t p = from; p <= to; ++p)
      if (!rings_only || is_ring_or_pool_call(p)) m = std::max(m, max_ns_[p]);
    return double(m) / 1e6;
  }

  Runtime& rt_;
  Ledger* l_;
  std::vector<std::string> fixed_;
  uint32_t failures_ = 0, dead_in_call_ = 0, dead_zones_ = 0, regions_ = 0;
  std::vector<uint32_t> dead_;
  std::unordered_map<uint32_t, uint32_t> top_unsure_objs_, top_unsure_blocks_;
  Windows win_;
  uint64_t lost_pool_ = 0, lost_pass_ = 0, lost_blocks_ = 0, held_objs_ = 0, held_blocks_ = 0, missing_ = 0,
           repairs_ = 0;
  int64_t objects_slack_ = 0, blocks_slack_ = 0;
  uint64_t max_ns_[kPhases] = {};
  uint64_t max_ring_ns_ = 0;
  std::string max_ring_name_ = "none";
};

sigset_t primary_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGUSR1, SIGTERM, SIGINT}) sigaddset(&set, s);
  return set;
}

int run_primary(Runtime& rt, const Args& a) {
  const uint64_t bytes = Ledger::bytes_for(a.records);
  auto* l = static_cast<Ledger*>(rt.memzones().reserve(kLedgerName, bytes).addr);  // zeroed
  l->records.store(a.records);
  std::memcpy(l->primary_id, rt.self().id.bytes.data(), 16);
  l->primary_beat_ns.store(now_ns());
  Mempool::create(rt, kPoolName, a.pool, kObjSize,
                  MempoolOptions{kCacheSize, [](void* o, uint32_t i) { obj_stamp(static_cast<Obj*>(o), mix(i)); }});
  Ring::create(rt, kPassName, kPassCapacity);
  Ring::create(rt, kBlocksName, kBlocksCapacity);
  Heap::create(rt, kHeapName, HeapOptions{1 << 20, 1 << 20, 0});
  std::vector<std::string> fixed;
  for (auto& z : rt.memzones().list()) fixed.push_back(z.name);
  const std::string me = rt.self().id.hex();
  rt.channel().register_action(kEcho,
                               [me](Incoming& in) { in.reply("echo:" + std::string(in.message().text()) + "|" + me); });
  l->magic.store(Ledger::kMagic, std::memory_order_release);
  say("READY id=%s pool=%u records=%u ledger_bytes=%" PRIu64 "\n", me.c_str(), a.pool, a.records, bytes);

  const sigset_t set = primary_signals();
  const timespec beat{0, 100'000'000};
  for (int step = 1;;) {
    l->primary_beat_ns.store(now_ns(), std::memory_order_relaxed);
    const int sig = sigtimedwait(&set, nullptr, &beat);
    if (sig == SIGTERM || sig == SIGINT) break;
    if (sig != SIGUSR1) continue;
    l->primary_beat_ns.store(now_ns(), std::memory_order_relaxed);
    if (step == 1) {
      l->command.store(kQuiesce, std::memory_order_release);
      say("STEP quiesce\n");
    } else if (step == 2) {
      Check(rt, l, fixed).run();
    } else if (step == 3) {
      l->command.store(kRelease, std::memory_order_release);
      say("STEP release\n");
    }
    ++step;
  }
  rt.channel().unregister_action(kEcho);
  say("EXIT\n");
  return 0;
}

uint64_t number(const std::string& s, const char* what) {
  try {
    size_t used = 0;
    const uint64_t v = std::stoull(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(Errc::invalid_argument, std::string("mpod-test-chaos: ") + what + " needs a number, got '" + s + "'");
}

Args parse_args(int from, int argc, char** argv) {
  Args a;
  for (int k = from; k < argc; ++k) {
    const std::string s = argv[k];
    const auto eq = s.find('=');
    const std::string key = s.substr(0, eq), value = eq == std::string::npos ? "" : s.substr(eq + 1);
    if (key == "--pool")
      a.pool = uint32_t(number(value, "--pool"));
    else if (key == "--records")
      a.records = uint32_t(number(value, "--records"));
    else if (key == "--slot")
      a.slot = uint32_t(number(value, "--slot"));
    else if (key == "--incarnation")
      a.incarnation = uint32_t(number(value, "--incarnation"));
    else if (key == "--seed")
      a.seed = number(value, "--seed");
    else if (key == "--timeout-ms")
      a.timeout_ms = int(number(value, "--timeout-ms"));
    else if (key == "--hang-ms")
      a.hang_ms = int(number(value, "--hang-ms"));
    else if (key == "--gate")
      a.gate = value;
    else
      throw Error(Errc::invalid_argument, "mpod-test-chaos: unknown argument " + s);
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  int i = test::apply_hostname_arg(argc, argv);
  if (i >= argc) {
    std::fprintf(stderr, "usage: mpod-test-chaos [--hostname=NAME] primary|pod [runtime options] [-- args]\n");
    return 2;
  }
  const std::string mode = argv[i];
  try {
    Options o;
    const int first = parse_options(argc - i, argv + i, o);
    const Args a = parse_args(i + first, argc, argv);
    if (mode == "primary") {
      // The test's own child: it goes when the test goes, and takes its steps by signal.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      const sigset_t set = primary_signals();
      sigprocmask(SIG_BLOCK, &set, nullptr);  // before any thread exists: they all inherit it
      o.proc_type = ProcType::primary;
      auto rt = Runtime::start(o);
      return run_primary(*rt, a);
    }
    if (mode != "pod") {
      std::fprintf(stderr, "mpod-test-chaos: unknown mode %s\n", mode.c_str());
      return 2;
    }
    o.proc_type = ProcType::secondary;
    if (!a.gate.empty()) wait_at_gate(a.gate);
    say("ATTACHING slot=%u incarnation=%u\n", a.slot, a.incarnation);
    const uint64_t t0 = now_ns();
    auto rt = Runtime::start(o);
    say("ATTACHED start_us=%" PRIu64 " incarnation=%u id=%s pid=%d\n", (now_ns() - t0) / 1000, a.incarnation,
        rt->self().id.hex().c_str(), rt->self().pid);
    return Pod(*rt, a).run();
  } catch (const Error& e) {
    say("ERROR %s: %s\n", errc_name(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    say("ERROR %s\n", e.what());
    return 1;
  }
}
