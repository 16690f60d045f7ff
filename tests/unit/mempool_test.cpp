// Mempool within one process: contracts, counts with and without caches,
// constructor and iteration, refusal of foreign pointers, thread caches that
// are flushed when their thread exits, and a threaded stress in which every
// object is held by one thread at a time (this test also runs under TSan).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "mpod/mempool.hpp"
#include "mpod/runtime.hpp"
#include "tests/helpers/error_code.hpp"
#include "tests/helpers/in_process_runtime.hpp"

namespace mpod {
namespace {

using test::code_of;

class MempoolTest : public test::InProcessRuntime {
 protected:
  MempoolTest() : InProcessRuntime("pool", 64) {}
};

TEST_F(MempoolTest, BadSizesNamesDuplicatesAndMissingPoolsAreClearErrors) {
  auto& rt = *rt_;
  EXPECT_EQ(code_of([&] { Mempool::create(rt, "zero", 0, 64); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Mempool::create(rt, "empty", 8, 0); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Mempool::create(rt, "cache", 8, 64, {Mempool::kMaxCacheSize + 1, {}}); }),
            Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Mempool::create(rt, std::string(Mempool::kMaxNameLen + 1, 'p'), 8, 64); }),
            Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Mempool::lookup(rt, "missing"); }), Errc::not_found);
  Mempool::create(rt, "taken", 8, 64);
  EXPECT_EQ(code_of([&] { Mempool::create(rt, "taken", 8, 64); }), Errc::already_exists);
  try {  // larger than the memory the domain may grow to (4 GiB): no_memory, saying what was asked
    Mempool::create(rt, "big", 1u << 20, 8192);
    ADD_FAILURE() << "an 8 GiB pool fit";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::no_memory);
    EXPECT_NE(std::string(e.what()).find("mempool 'big' of 1048576 objects of 8192 bytes"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(code_of([&] { Mempool::lookup(rt, "big"); }), Errc::not_found) << "a failed create leaves nothing";
  Mempool::destroy(rt, "taken");
  EXPECT_EQ(code_of([&] { Mempool::lookup(rt, "taken"); }), Errc::not_found);
  EXPECT_EQ(code_of([&] { Mempool::destroy(rt, "taken"); }), Errc::not_found);
  Mempool::create(rt, "taken", 8, 64);  // the name and memory are reusable
}

TEST_F(MempoolTest, ConstructorIterationAndCountsWithoutCache) {
  auto pool = Mempool::create(*rt_, "plain", 100, 40,
                              {0, [](void* obj, uint32_t i) { *static_cast<uint32_t*>(obj) = i * 3 + 1; }});
  EXPECT_EQ(pool.size(), 100u);
  EXPECT_EQ(pool.elt_size(), 40u);
  EXPECT_EQ(pool.available(), 100u);
  std::set<void*> seen;
  pool.for_each([&](void* obj, uint32_t i) {
    EXPECT_EQ(*static_cast<uint32_t*>(obj), i * 3 + 1);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(obj) % 64, 0u);
    EXPECT_TRUE(pool.contains(obj));
    seen.insert(obj);
  });
  EXPECT_EQ(seen.size(), 100u);
  std::vector<void*> got(100);
  ASSERT_TRUE(pool.get_bulk(got.data(), 60));
  EXPECT_EQ(pool.in_use(), 60u);
  EXPECT_FALSE(pool.get_bulk(got.data() + 60, 41)) << "all or nothing";
  EXPECT_EQ(pool.available(), 40u);
  ASSERT_TRUE(pool.get_bulk(got.data() + 60, 40));
  void* extra;
  EXPECT_FALSE(pool.get(&extra));
  EXPECT_EQ(std::set<void*>(got.begin(), got.end()), seen) << "each object handed out once";
  EXPECT_EQ(pool.put_bulk(got.data(), 100), 100u);
  EXPECT_EQ(pool.available(), 100u);
}

// Objects sit an odd number of cache lines apart (unless spread is off), so
// the first lines of consecutive objects go round every cache set instead of
// sharing a few. The addresses come from for_each; every object must still be
// handed out and taken back, and a line inside an object is not an object.
TEST_F(MempoolTest, ObjectsAreSpreadOverCacheSetsUnlessAskedNotTo) {
  struct Case {
    const char* name;
    uint32_t elt_size;
    bool spread;
    uintptr_t stride;
  };
  const Case cases[] = {{"spread2048", 2048, true, 2112}, {"spread64", 64, true, 64}, {"spread100", 100, true, 192},
                        {"spread129", 129, true, 192},   {"packed2048", 2048, false, 2048}};
  for (const Case& c : cases) {
    MempoolOptions o;
    o.cache_size = 8;
    o.spread = c.spread;
    auto pool = Mempool::create(*rt_, c.name, 50, c.elt_size, o);
    std::vector<void*> objs;
    pool.for_each([&](void* obj, uint32_t) { objs.push_back(obj); });
    ASSERT_EQ(objs.size(), 50u);
    for (size_t i = 1; i < objs.size(); ++i)
      ASSERT_EQ(reinterpret_cast<uintptr_t>(objs[i]) - reinterpret_cast<uintptr_t>(objs[i - 1]), c.stride) << c.name;
    std::vector<void*> got(50);
    ASSERT_TRUE(pool.get_bulk(got.data(), 50)) << c.name;
    EXPECT_EQ(std::set<void*>(got.begin(), got.end()), std::set<void*>(objs.begin(), objs.end())) << c.name;
    EXPECT_EQ(pool.put_bulk(got.data(), 50), 50u) << c.name;
    EXPECT_EQ(pool.available(), 50u) << c.name;
    if (c.stride > 64) {
      EXPECT_FALSE(pool.contains(static_cast<char*>(objs[1]) + 64)) << c.name << ": a line inside an object";
    }
  }
}

TEST_F(MempoolTest, ForeignPointersAreRefusedAndTheRestPutBack) {
  auto pool = Mempool::create(*rt_, "strict", 16, 64);
  auto other = Mempool::create(*rt_, "other", 16, 64);
  void* objs[3];
  ASSERT_TRUE(pool.get_bulk(objs, 2));
  ASSERT_TRUE(other.get(&objs[2]));
  EXPECT_EQ(pool.put_bulk(objs, 3), 2u) << "the other pool's object is refused";
  EXPECT_EQ(pool.available(), 16u);
  EXPECT_EQ(other.available(), 15u);
  char on_stack[64];
  EXPECT_FALSE(pool.put(on_stack));
  EXPECT_FALSE(pool.contains(static_cast<char*>(objs[0]) + 32)) << "inside an object, not its start";
  EXPECT_FALSE(pool.put(static_cast<char*>(objs[0]) + 32));
  EXPECT_EQ(pool.available(), 16u);
}

// The inline put paths (with a cache, and straight to the ring) check every
// pointer in one branch-free pass, two at a time: a bad pointer in any lane
// or in the scalar tail, of each kind, must send the call to the slow path,
// which refuses just that pointer.
TEST_F(MempoolTest, EveryKindOfBadPointerIsRefusedAtEveryPositionOfABulkPut) {
  for (const uint32_t cache : {0u, 64u}) {
    SCOPED_TRACE("cache " + std::to_string(cache));
    const std::string suffix = std::to_string(cache);
    auto pool = Mempool::create(*rt_, "lanes" + suffix, 100, 64, {cache, {}});
    auto other = Mempool::create(*rt_, "beside" + suffix, 4, 64);
    char* first = nullptr;
    char* last = nullptr;
    pool.for_each([&](void* obj, uint32_t i) {
      if (i == 0) first = static_cast<char*>(obj);
      if (i == 99) last = static_cast<char*>(obj);
    });
    void* foreign = nullptr;
    ASSERT_TRUE(other.get(&foreign));
    const std::vector<void*> bad = {first - 64, last + 64, first + 8, last + 1, foreign, nullptr};
    constexpr unsigned kN = 31;  // 7 rounds of 4, then a scalar tail of 3
    for (void* wrong : bad) {
      for (unsigned at = 0; at < kN; ++at) {
        void* objs[kN];
        ASSERT_TRUE(pool.get_bulk(objs, kN));
        void* const good = objs[at];
        objs[at] = wrong;
        EXPECT_EQ(pool.put_bulk(objs, kN), kN - 1) << "bad pointer " << wrong << " at " << at;
        ASSERT_TRUE(pool.put(good));
        ASSERT_EQ(pool.available(), 100u);
      }
    }
    // Every object is still there exactly once.
    pool.flush_thread_cache();
    std::vector<void*> all(100);
    ASSERT_TRUE(pool.get_bulk(all.data(), 100));
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
    EXPECT_EQ(all.front(), first);
    EXPECT_EQ(all.back(), last);
    EXPECT_EQ(pool.put_bulk(all.data(), 100), 100u);
  }
}

TEST_F(MempoolTest, AnObjectPutBackTwiceIsDroppedNotSpunOn) {
  // Without a cache the second put finds the common ring holding the whole
  // pool: it must return (refusing the surplus), not wait for room.
  auto pool = Mempool::create(*rt_, "twice", 8, 64);
  void* obj = nullptr;
  ASSERT_TRUE(pool.get(&obj));
  EXPECT_TRUE(pool.put(obj));
  EXPECT_FALSE(pool.put(obj)) << "the second put of one object";
  void* two[2] = {obj, obj};
  EXPECT_EQ(pool.put_bulk(two, 2), 0u);
  EXPECT_EQ(pool.available(), 8u);
}

TEST_F(MempoolTest, ThreadCachesCountAsAvailableAndAreFlushedWhenTheThreadExits) {
  auto pool = Mempool::create(*rt_, "cached", 1000, 64, {32, {}});
  std::thread([&] {
    void* objs[8];
    ASSERT_TRUE(pool.get_bulk(objs, 8));
    // The refill took cache_size more into this thread's cache: still available.
    EXPECT_EQ(pool.available(), 992u);
    EXPECT_EQ(pool.in_use(), 8u);
    EXPECT_EQ(pool.put_bulk(objs, 8), 8u);
    EXPECT_EQ(pool.available(), 1000u);
  }).join();
  // Its cache went back to the common pool: all 1000 can be taken in bulk here.
  std::vector<void*> all(1000);
  for (unsigned at = 0; at < 1000; at += Mempool::kMaxBulk)
    ASSERT_TRUE(pool.get_bulk(all.data() + at, std::min(1000u - at, Mempool::kMaxBulk))) << at;
  EXPECT_EQ(std::set<void*>(all.begin(), all.end()).size(), 1000u);
  for (unsigned at = 0; at < 1000; at += Mempool::kMaxBulk)
    pool.put_bulk(all.data() + at, std::min(1000u - at, Mempool::kMaxBulk));
  EXPECT_EQ(pool.available(), 1000u);
}

TEST_F(MempoolTest, CacheNeverHoldsMoreThanOneAndAHalfTimesItsSize) {
  auto pool = Mempool::create(*rt_, "bounded", 4096, 64, {100, {}});
  std::vector<void*> objs(2000);
  for (unsigned at = 0; at < 2000; at += 20) ASSERT_TRUE(pool.get_bulk(objs.data() + at, 20));
  for (unsigned at = 0; at < 2000; at += 20) pool.put_bulk(objs.data() + at, 20);
  // What the common pool holds is what no cache holds: at most 150 are cached.
  std::vector<void*> direct(Mempool::kMaxBulk);
  unsigned from_ring = 0;
  while (pool.get_bulk(direct.data(), 101)) {  // above cache_size: straight from the ring
    from_ring += 101;
    if (from_ring > 4096) break;
  }
  EXPECT_GE(from_ring + 101, 4096u - 150) << "the cache kept more than 1.5 x its size";
}

// Every thread takes objects, checks nobody else holds them (a marker in the
// object), and gives them back, through caches and bulk calls of varying size.
TEST_F(MempoolTest, ThreadsNeverShareAnObject) {
  constexpr uint32_t kObjects = 512;
  auto pool = Mempool::create(*rt_, "stress", kObjects, 64, {16, {}});
  const int threads = 4, rounds = 20000;
  std::atomic<uint64_t> clashes{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      void* objs[40];
      for (int r = 0; r < rounds; ++r) {
        const unsigned n = 1 + (r * 7 + t) % 40;
        if (!pool.get_bulk(objs, n)) continue;
        for (unsigned i = 0; i < n; ++i) {
          auto* owner = static_cast<std::atomic<int>*>(objs[i]);
          int expected = 0;
          if (!owner->compare_exchange_strong(expected, t + 1)) clashes++;
        }
        for (unsigned i = 0; i < n; ++i) static_cast<std::atomic<int>*>(objs[i])->store(0);
        ASSERT_EQ(pool.put_bulk(objs, n), n);
      }
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(clashes.load(), 0u);
  EXPECT_EQ(pool.available(), kObjects) << "every thread's cache was flushed at its exit";
}

}  // namespace
}  // namespace mpod
