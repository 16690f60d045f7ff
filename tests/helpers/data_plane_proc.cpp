// mpod-test-dataplane: the processes of the cross-pod heap and mempool tests.
//
//   mpod-test-dataplane [--hostname=NAME] MODE [runtime options] [-- MODE ARGS]
//
// owner             primary: creates --heap, --pool=NAME,n,size,cache and
//                   --ring=NAME,capacity, prints READY, waits for SIGTERM
// heap-storm        allocates, fills, frees its own blocks and blocks that
//                   other pods pass it through --ring; checks every block
// heap-die-in-lock  takes the heap's lock, leaves a free half done, dies
// heap-check        frees what is left in --ring, then checks the whole heap
// pool-stress       takes objects, marks them as its own (a clash means two
//                   processes hold one object), passes some to other pods
// pool-hold         takes --count objects through its cache, prints HELD, waits
// pool-check        looks the pool up (reclaiming dead caches), prints counts
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mpod/heap.hpp"
#include "mpod/mempool.hpp"
#include "mpod/ring.hpp"
#include "mpod/runtime.hpp"
#include "src/objects/heap_blocks.hpp"
#include "src/os/os.hpp"
#include "tests/helpers/proc_common.hpp"

namespace {

using namespace mpod;

struct Args {
  std::string heap, pool, ring;
  int rounds = 1000, index = 0, count = 1;
};

// A heap block passed between pods: who filled it and how.
struct Handoff {
  uint64_t ptr, size;
  uint32_t seed, sender;
};
static_assert(sizeof(Handoff) == 24);

unsigned char pattern(uint32_t seed, uint64_t i) { return static_cast<unsigned char>(seed + i * 31); }

int run_owner(Runtime& rt, const Args& a) {
  if (!a.heap.empty()) Heap::create(rt, a.heap, HeapOptions{1 << 20, 1 << 20, 0});
  if (!a.ring.empty()) {
    auto f = test::split_commas(a.ring);
    Ring::create(rt, f[0], uint32_t(std::stoul(f[1])), RingOptions{sizeof(Handoff), Sync::multi, Sync::multi});
  }
  if (!a.pool.empty()) {
    auto f = test::split_commas(a.pool);
    Mempool::create(rt, f[0], uint32_t(std::stoul(f[1])), uint32_t(std::stoul(f[2])),
                    MempoolOptions{uint32_t(std::stoul(f[3])), {}});
  }
  std::printf("READY pid=%d\n", rt.self().pid);
  std::fflush(stdout);
  test::wait_for_stop();
  return 0;
}

// Checks a block passed in (mapping its region first, through size_of) and frees it.
bool verify_and_free(Heap& heap, const Handoff& h) {
  void* p = reinterpret_cast<void*>(h.ptr);
  if (heap.size_of(p) != h.size) return false;
  auto* b = static_cast<unsigned char*>(p);
  bool ok = true;
  for (uint64_t i = 0; i < h.size && ok; ++i) ok = b[i] == pattern(h.seed, i);
  heap.free(p);
  return ok;
}

int run_heap_storm(Runtime& rt, const Args& a) {
  Heap heap = Heap::lookup(rt, a.heap);
  Ring ring = Ring::lookup(rt, a.ring);
  std::mt19937 rng(uint32_t(a.index) * 7919u + 1);
  std::vector<Handoff> mine;
  uint64_t allocated = 0, freed_own = 0, freed_others = 0, passed = 0, bad = 0;
  for (int r = 0; r < a.rounds; ++r) {
    if (mine.size() < 100 && rng() % 2) {
      Handoff h{0, rng() % 8192, uint32_t(rng()), uint32_t(a.index)};
      if (rng() % 50 == 0) h.size = 200000 + rng() % 300000;  // some large blocks, to make the heap grow
      void* p = rng() % 4 ? heap.alloc(h.size, size_t(64) << (rng() % 4)) : heap.zalloc(h.size);
      for (uint64_t i = 0; i < h.size; ++i) static_cast<unsigned char*>(p)[i] = pattern(h.seed, i);
      h.ptr = reinterpret_cast<uint64_t>(p);
      mine.push_back(h);
      allocated++;
    } else if (!mine.empty()) {
      const size_t k = rng() % mine.size();
      Handoff h = mine[k];
      mine[k] = mine.back();
      mine.pop_back();
      if (rng() % 2 && ring.enqueue_bulk_elem(&h, 1) == 1) {
        passed++;
      } else {
        bad += !verify_and_free(heap, h);
        freed_own++;
      }
    }
    Handoff in;
    if (rng() % 2 && ring.dequeue_bulk_elem(&in, 1) == 1) {
      bad += !verify_and_free(heap, in);
      freed_others++;
    }
  }
  for (auto& h : mine) bad += !verify_and_free(heap, h);
  std::printf("STORM allocated=%llu freed_own=%llu freed_others=%llu passed=%llu bad=%llu pid=%d\n",
              static_cast<unsigned long long>(allocated), static_cast<unsigned long long>(freed_own),
              static_cast<unsigned long long>(freed_others), static_cast<unsigned long long>(passed),
              static_cast<unsigned long long>(bad), rt.self().pid);
  return bad ? 1 : 0;
}

// Frees the middle one of three blocks the way release() starts (marks it
// free) and dies before merging it or listing it, holding the lock.
int run_heap_die_in_lock(Runtime& rt, const Args& a) {
  Heap heap = Heap::lookup(rt, a.heap);
  void* blocks[3];
  for (auto& b : blocks) b = heap.alloc(1000);
  auto* h = static_cast<Heap::Header*>(rt.memzones().lookup("HP_" + a.heap)->addr);
  ProcessLock lock(&h->lock, rt.domain_dir(), rt.self().id, "test");
  lock.lock();
  auto* middle = heap::block_at(heap::addr_of(blocks[1]) - heap::kUnit);
  middle->magic = heap::kFree;
  h->allocated_blocks--;
  std::printf("DYING holding the lock of heap '%s'\n", a.heap.c_str());
  std::fflush(stdout);
  _exit(0);  // no unlock, no shutdown: as if killed
}

int run_heap_check(Runtime& rt, const Args& a) {
  Heap heap = Heap::lookup(rt, a.heap);
  uint64_t bad = 0, drained = 0;
  if (!a.ring.empty()) {
    Ring ring = Ring::lookup(rt, a.ring);
    Handoff in;
    while (ring.dequeue_bulk_elem(&in, 1) == 1) {
      bad += !verify_and_free(heap, in);
      drained++;
    }
  }
  void* probe = heap.alloc(100);  // waits out (or takes over) the lock
  heap.free(probe);
  heap.check();
  const HeapStats s = heap.stats();
  std::printf("CHECK ok drained=%llu bad=%llu allocated_blocks=%u free_blocks=%u regions=%u repairs=%llu\n",
              static_cast<unsigned long long>(drained), static_cast<unsigned long long>(bad), s.allocated_blocks,
              s.free_blocks, s.regions, static_cast<unsigned long long>(s.repairs));
  return bad ? 1 : 0;
}

int run_pool_stress(Runtime& rt, const Args& a) {
  Mempool pool = Mempool::lookup(rt, a.pool);
  Ring ring = Ring::lookup(rt, a.ring);
  const uint64_t me = uint64_t(a.index) + 1;
  std::mt19937 rng(uint32_t(a.index) + 11);
  uint64_t taken = 0, clashes = 0, passed = 0, received = 0;
  void* objs[32];
  // Marks an object as held by `me`; a clash means another process holds it too.
  auto claim = [&](void* obj) {
    uint64_t expected = 0;
    if (!std::atomic_ref<uint64_t>(*static_cast<uint64_t*>(obj)).compare_exchange_strong(expected, me)) clashes++;
  };
  auto unclaim = [&](void* obj) { std::atomic_ref<uint64_t>(*static_cast<uint64_t*>(obj)).store(0); };
  for (int r = 0; r < a.rounds; ++r) {
    const unsigned n = 1 + rng() % 32;
    if (pool.get_bulk(objs, n)) {
      taken += n;
      for (unsigned i = 0; i < n; ++i) claim(objs[i]);
      for (unsigned i = 0; i < n; ++i) {
        Handoff h{reinterpret_cast<uint64_t>(objs[i]), 0, 0, uint32_t(me)};
        if (rng() % 4 == 0 && ring.enqueue_bulk_elem(&h, 1) == 1) {  // pass it on, still marked as ours
          passed++;
          objs[i] = nullptr;
        } else {
          unclaim(objs[i]);
        }
      }
      for (unsigned i = 0; i < n; ++i)
        if (objs[i]) pool.put(objs[i]);
    }
    Handoff in;
    while (ring.dequeue_bulk_elem(&in, 1) == 1) {
      void* obj = reinterpret_cast<void*>(in.ptr);
      if (std::atomic_ref<uint64_t>(*static_cast<uint64_t*>(obj)).load() != in.sender) clashes++;
      unclaim(obj);
      pool.put(obj);
      received++;
    }
  }
  std::printf("POOLSTRESS taken=%llu passed=%llu received=%llu clashes=%llu pid=%d\n",
              static_cast<unsigned long long>(taken), static_cast<unsigned long long>(passed),
              static_cast<unsigned long long>(received), static_cast<unsigned long long>(clashes), rt.self().pid);
  return clashes ? 1 : 0;
}

int run_pool_hold(Runtime& rt, const Args& a) {
  Mempool pool = Mempool::lookup(rt, a.pool);
  for (int i = 0; i < a.count; ++i) {
    void* obj;
    if (!pool.get(&obj)) {
      std::fprintf(stderr, "pool-hold: mempool '%s' ran out after %d objects\n", a.pool.c_str(), i);
      return 1;
    }
  }
  std::printf("HELD %d available=%u\n", a.count, pool.available());
  std::fflush(stdout);
  test::wait_for_stop();
  return 0;
}

int run_pool_check(Runtime& rt, const Args& a) {
  Mempool pool = Mempool::lookup(rt, a.pool);
  if (!a.ring.empty()) {  // objects stress processes passed on and nobody took
    Ring ring = Ring::lookup(rt, a.ring);
    Handoff in;
    while (ring.dequeue_bulk_elem(&in, 1) == 1) {
      std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(in.ptr)).store(0);
      pool.put(reinterpret_cast<void*>(in.ptr));
    }
  }
  std::printf("POOL available=%u in_use=%u size=%u common=%u\n", pool.available(), pool.in_use(), pool.size(),
              Ring::lookup(rt, "MP_" + a.pool).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int i = test::apply_hostname_arg(argc, argv);
  if (i >= argc) {
    std::fprintf(stderr, "usage: mpod-test-dataplane [--hostname=NAME] MODE [runtime options] [-- args]\n");
    return 2;
  }
  const std::string mode = argv[i];
  test::block_stop_signals();
  try {
    Options o;
    const int first = parse_options(argc - i, argv + i, o);
    Args a;
    for (int k = i + first; k < argc; ++k) {
      const std::string s = argv[k];
      if (s.starts_with("--heap=")) a.heap = s.substr(7);
      else if (s.starts_with("--pool=")) a.pool = s.substr(7);
      else if (s.starts_with("--ring=")) a.ring = s.substr(7);
      else if (s.starts_with("--rounds=")) a.rounds = std::stoi(s.substr(9));
      else if (s.starts_with("--index=")) a.index = std::stoi(s.substr(8));
      else if (s.starts_with("--count=")) a.count = std::stoi(s.substr(8));
      else {
        std::fprintf(stderr, "mpod-test-dataplane: unknown argument %s\n", s.c_str());
        return 2;
      }
    }
    o.proc_type = mode == "owner" ? ProcType::primary : ProcType::secondary;
    auto rt = Runtime::start(o);
    if (mode == "owner") return run_owner(*rt, a);
    if (mode == "heap-storm") return run_heap_storm(*rt, a);
    if (mode == "heap-die-in-lock") return run_heap_die_in_lock(*rt, a);
    if (mode == "heap-check") return run_heap_check(*rt, a);
    if (mode == "pool-stress") return run_pool_stress(*rt, a);
    if (mode == "pool-hold") return run_pool_hold(*rt, a);
    if (mode == "pool-check") return run_pool_check(*rt, a);
    std::fprintf(stderr, "mpod-test-dataplane: unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpod-test-dataplane %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
}
