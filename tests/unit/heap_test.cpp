// Heap within one process: contracts, alignment, zeroing, realloc in place
// and by moving, frees that the heap must refuse (foreign, interior, double,
// overflowed) leaving it intact, growth and its limit, statistics, and a
// threaded storm checked block by block (this test also runs under TSan).
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "mpod/heap.hpp"
#include "mpod/runtime.hpp"
#include "tests/helpers/error_code.hpp"
#include "tests/helpers/in_process_runtime.hpp"

namespace mpod {
namespace {

using test::code_of;

class HeapTest : public test::InProcessRuntime {
 protected:
  HeapTest() : InProcessRuntime("heap", 64) {}
  Heap small(const char* name, uint64_t max_bytes = 0) {
    return Heap::create(*rt_, name, HeapOptions{256 << 10, 256 << 10, max_bytes});
  }
};

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

TEST_F(HeapTest, NamesOptionsDuplicatesAndMissingHeapsAreClearErrors) {
  auto& rt = *rt_;
  EXPECT_EQ(code_of([&] { Heap::create(rt, "", {}); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Heap::create(rt, "a.b", {}); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Heap::create(rt, std::string(Heap::kMaxNameLen + 1, 'h'), {}); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Heap::create(rt, "tiny", {4096, 1 << 20, 0}); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Heap::create(rt, "capped", {1 << 20, 1 << 20, 1 << 19}); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { Heap::lookup(rt, "missing"); }), Errc::not_found);
  small("taken");
  EXPECT_EQ(code_of([&] { small("taken"); }), Errc::already_exists);
  Heap opened = Heap::open(rt, "taken");
  EXPECT_EQ(opened.stats().heap_bytes, 256u << 10) << "open finds the existing heap";
  Heap::destroy(rt, "taken");
  EXPECT_EQ(code_of([&] { Heap::lookup(rt, "taken"); }), Errc::not_found);
}

TEST_F(HeapTest, AlignmentZeroingAndSizes) {
  Heap h = small("align");
  for (size_t align : {0ul, 8ul, 64ul, 128ul, 4096ul, 65536ul}) {
    void* p = h.alloc(100, align);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (align < 64 ? 64 : align), 0u) << align;
    EXPECT_EQ(h.size_of(p), 100u);
    std::memset(p, 0xab, 100);
  }
  EXPECT_EQ(code_of([&] { h.alloc(10, 48); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { h.alloc(Heap::kMaxAlloc + 1); }), Errc::invalid_argument);
  void* zero = h.alloc(0);
  void* zero2 = h.alloc(0);
  EXPECT_NE(zero, zero2) << "size 0 still gives a unique block";
  auto* z = static_cast<unsigned char*>(h.zalloc(5000));
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(z[i], 0) << i;
  h.check();
}

TEST_F(HeapTest, ReallocKeepsContentsInPlaceOrMoved) {
  Heap h = small("realloc");
  auto* p = static_cast<unsigned char*>(h.alloc(1000, 256));
  for (int i = 0; i < 1000; ++i) p[i] = uint8_t(i);
  auto* grown = static_cast<unsigned char*>(h.realloc(p, 3000));
  EXPECT_EQ(grown, p) << "the free space after it is used in place";
  auto* blocker = h.alloc(64);
  auto* moved = static_cast<unsigned char*>(h.realloc(grown, 100000));
  EXPECT_NE(moved, grown);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(moved) % 256, 0u) << "alignment kept";
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(moved[i], uint8_t(i)) << i;
  auto* shrunk = static_cast<unsigned char*>(h.realloc(moved, 10));
  EXPECT_EQ(shrunk, moved);
  EXPECT_EQ(h.size_of(shrunk), 10u);
  void* fresh = h.realloc(nullptr, 50);
  EXPECT_EQ(h.size_of(fresh), 50u);
  h.check();
  h.free(shrunk);
  h.free(blocker);
  h.free(fresh);
  h.check();
}

TEST_F(HeapTest, BadFreesAreRefusedAndLeaveTheHeapIntact) {
  Heap h = small("strict");
  Heap other = small("other");
  auto* p = static_cast<char*>(h.alloc(200));
  void* q = h.alloc(300);
  const HeapStats before = h.stats();
  int on_stack = 0;
  EXPECT_NE(message_of([&] { h.free(&on_stack); }).find("does not lie in this heap"), std::string::npos);
  EXPECT_NE(message_of([&] { h.free(other.alloc(10)); }).find("does not lie in this heap"), std::string::npos);
  EXPECT_NE(message_of([&] { h.free(p + 64); }).find("not the start of a block"), std::string::npos);
  EXPECT_NE(message_of([&] { h.free(p + 8); }).find("not the start of a block"), std::string::npos);
  h.free(q);
  EXPECT_NE(message_of([&] { h.free(q); }).find("double free"), std::string::npos);
  p[200] = 'X';  // one byte past the end
  EXPECT_EQ(code_of([&] { h.free(p); }), Errc::corrupt);
  EXPECT_NE(message_of([&] { h.free(p); }).find("written past its end"), std::string::npos);
  EXPECT_EQ(h.stats().allocated_blocks, before.allocated_blocks - 1) << "only q was freed";
  EXPECT_EQ(code_of([&] { h.check(); }), Errc::corrupt) << "check names the overflowed block";
  p[200] = 0;
  std::memcpy(p + 200, "MOD_MPH_", 8);  // the guard, little-endian, restored by hand
  h.check();
  h.free(p);
  h.check();
  EXPECT_NO_THROW(h.free(nullptr));
}

TEST_F(HeapTest, GrowsByRegionsUpToItsLimitThenSaysWhy) {
  Heap h = small("growing", 1 << 20);
  std::vector<void*> blocks;
  for (int i = 0; i < 3; ++i) blocks.push_back(h.alloc(200 << 10));
  EXPECT_GE(h.stats().regions, 2u);
  const std::string why = message_of([&] { h.alloc(900 << 10); });
  EXPECT_NE(why.find("cannot allocate 921600 bytes"), std::string::npos) << why;
  EXPECT_NE(why.find("max_bytes"), std::string::npos) << why;
  EXPECT_EQ(h.try_alloc(900 << 10), nullptr);
  for (void* b : blocks) h.free(b);
  const HeapStats s = h.stats();
  EXPECT_EQ(s.allocated_blocks, 0u);
  EXPECT_EQ(s.free_blocks, s.regions) << "everything merged back: one free block per region";
  EXPECT_EQ(s.free_bytes, s.heap_bytes - s.regions * 64);
  h.check();
}

TEST_F(HeapTest, FreedMemoryIsReused) {
  Heap h = small("reuse");
  void* a = h.alloc(100000);
  h.free(a);
  void* b = h.alloc(100000);
  EXPECT_EQ(a, b);
  EXPECT_EQ(h.stats().regions, 1u);
}

// Threads allocate random sizes, fill each block with a pattern of its own,
// free at random (including each other's blocks), and every block is checked
// intact before it is freed.
TEST_F(HeapTest, ThreadStormKeepsEveryBlockIntact) {
  Heap h = Heap::create(*rt_, "storm", HeapOptions{1 << 20, 1 << 20, 0});
  struct Held {
    unsigned char* p;
    size_t n;
    unsigned char fill;
  };
  const int threads = 4, rounds = 4000;
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  std::vector<std::vector<Held>> handoff(threads);
  std::vector<std::mutex> handoff_lock(threads);
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<Held> mine;
      auto verify_free = [&](const Held& x) {
        for (size_t i = 0; i < x.n; ++i)
          if (x.p[i] != x.fill) {
            bad++;
            break;
          }
        h.free(x.p);
      };
      for (int r = 0; r < rounds; ++r) {
        if (mine.size() < 64 && rng() % 3) {
          size_t n = rng() % 3000;
          auto fill = static_cast<unsigned char>(rng());
          auto* p = static_cast<unsigned char*>(r % 5 ? h.alloc(n) : h.zalloc(n, 128));
          if (r % 5 == 0)
            for (size_t i = 0; i < n; ++i)
              if (p[i]) bad++;
          std::memset(p, fill, n);
          mine.push_back({p, n, fill});
        } else if (!mine.empty()) {
          Held x = mine[rng() % mine.size()];
          std::erase_if(mine, [&](const Held& y) { return y.p == x.p; });
          if (rng() % 2) {  // give it to the next thread to free
            std::lock_guard<std::mutex> g(handoff_lock[(t + 1) % threads]);
            handoff[(t + 1) % threads].push_back(x);
          } else {
            verify_free(x);
          }
        }
        std::vector<Held> given;
        {
          std::lock_guard<std::mutex> g(handoff_lock[t]);
          given.swap(handoff[t]);
        }
        for (auto& x : given) verify_free(x);
      }
      for (auto& x : mine) verify_free(x);
    });
  for (auto& th : ts) th.join();
  for (int t = 0; t < threads; ++t)
    for (auto& x : handoff[t]) h.free(x.p);
  EXPECT_EQ(bad.load(), 0);
  h.check();
  EXPECT_EQ(h.stats().allocated_blocks, 0u);
}

}  // namespace
}  // namespace mpod
