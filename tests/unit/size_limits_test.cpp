// Every size, count and alignment the public API takes is checked before it
// is used in arithmetic: a value near 2^64 (or 2^32) must be refused with
// invalid_argument or no_memory, never wrap into a small one that passes the
// checks. Memzones::reserve(UINT64_MAX) used to pass them by overflow and
// zero the shared memory from the start of the memseg list, other
// processes' memzones and pool headers included.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "mpod/channel.hpp"
#include "mpod/heap.hpp"
#include "mpod/mempool.hpp"
#include "mpod/memzone.hpp"
#include "mpod/ring.hpp"
#include "mpod/runtime.hpp"
#include "tests/helpers/in_process_runtime.hpp"

namespace mpod {
namespace {

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();
constexpr uint32_t kMax32 = std::numeric_limits<uint32_t>::max();

// The code of the Error `f` throws; a test failure if it throws nothing.
Errc code_of(const std::function<void()>& f, const std::string& what) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << what << " was accepted";
  return Errc::system;
}

bool refused(Errc c) { return c == Errc::invalid_argument || c == Errc::no_memory; }

class SizeLimitsTest : public test::InProcessRuntime {
 protected:
  SizeLimitsTest() : InProcessRuntime("sizes", 64) {}

  // A memzone reserved first, right at the start of the memory, filled with
  // a pattern: whatever a wrapped size would have zeroed.
  void SetUp() override {
    InProcessRuntime::SetUp();
    canary_ = rt_->memzones().reserve("canary", 4096);
    std::memset(canary_.addr, 0xa5, canary_.len);
  }
  void TearDown() override {
    const auto* p = static_cast<const uint8_t*>(canary_.addr);
    for (uint64_t i = 0; i < canary_.len; ++i)
      if (p[i] != 0xa5) {
        ADD_FAILURE() << "the canary memzone was overwritten at byte " << i;
        break;
      }
  }
  Memzone canary_;
};

TEST_F(SizeLimitsTest, MemzoneLengthsNear2To64AreRefused) {
  auto& mz = rt_->memzones();
  for (uint64_t len : {kMax64, kMax64 - 4095, kMax64 - 63, kMax64 / 2 + 1, uint64_t(1) << 63, uint64_t(1) << 48}) {
    const Errc c = code_of([&] { mz.reserve("huge", len); }, "memzone of " + std::to_string(len) + " bytes");
    EXPECT_TRUE(refused(c)) << "len " << len << ": " << errc_name(c);
  }
  // The same through every page size the domain has.
  for (auto& u : rt_->memory()) {
    const Errc c = code_of([&] { mz.reserve("huge", kMax64 - 4095, 64, u.page_size); }, "memzone of 2^64-4096 bytes");
    EXPECT_TRUE(refused(c)) << errc_name(c);
  }
  EXPECT_FALSE(mz.lookup("huge")) << "a refused memzone must leave no entry";
}

TEST_F(SizeLimitsTest, MemzoneAlignmentsNear2To64AreRefused) {
  auto& mz = rt_->memzones();
  for (uint64_t align : {uint64_t(1) << 63, uint64_t(1) << 62, uint64_t(1) << 50}) {
    const Errc c = code_of([&] { mz.reserve("aligned", 64, align); }, "alignment " + std::to_string(align));
    EXPECT_TRUE(refused(c)) << "align " << align << ": " << errc_name(c);
  }
  for (uint64_t align : {kMax64, kMax64 - 63, uint64_t(3) << 62})  // not powers of two
    EXPECT_EQ(code_of([&] { mz.reserve("aligned", 64, align); }, "alignment " + std::to_string(align)),
              Errc::invalid_argument);
  // A large but possible alignment still works.
  auto z = mz.reserve("aligned", 64, 1 << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(z.addr) % (1 << 20), 0u);
}

TEST_F(SizeLimitsTest, HeapSizesAndAlignmentsNear2To64AreRefused) {
  auto heap = Heap::create(*rt_, "sizes");
  for (size_t size : {size_t(kMax64), size_t(kMax64 - 63), size_t(Heap::kMaxAlloc) + 1}) {
    EXPECT_TRUE(refused(code_of([&] { heap.alloc(size); }, "heap alloc of " + std::to_string(size))));
    EXPECT_TRUE(refused(code_of([&] { heap.zalloc(size); }, "heap zalloc of " + std::to_string(size))));
    EXPECT_EQ(heap.try_alloc(size), nullptr);
  }
  for (size_t align : {size_t(1) << 63, size_t(1) << 62, size_t(1) << 41}) {
    EXPECT_TRUE(refused(code_of([&] { heap.alloc(64, align); }, "heap alignment " + std::to_string(align))));
    EXPECT_EQ(heap.try_alloc(64, align), nullptr);
  }
  void* p = heap.alloc(100);
  std::memset(p, 0x5a, 100);
  for (size_t size : {size_t(kMax64), size_t(kMax64 - 63)})
    EXPECT_TRUE(refused(code_of([&] { heap.realloc(p, size); }, "heap realloc to " + std::to_string(size))));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(static_cast<uint8_t*>(p)[i], 0x5a) << "a refused realloc changed the block";
  heap.free(p);
  heap.check();
}

TEST_F(SizeLimitsTest, RingCapacitiesAndElementSizesNear2To32AreRefused) {
  for (uint32_t cap : {kMax32, kMax32 - 1, Ring::kMaxCapacity + 1, uint32_t(1) << 31, 0u})
    EXPECT_EQ(code_of([&] { Ring::create(*rt_, "big", cap); }, "ring of " + std::to_string(cap)), Errc::invalid_argument);
  for (uint32_t esize : {kMax32, kMax32 - 3, uint32_t(1) << 31, 1028u, 0u, 6u}) {
    RingOptions o;
    o.elem_size = esize;
    EXPECT_EQ(code_of([&] { Ring::create(*rt_, "wide", 1024, o); }, "ring element of " + std::to_string(esize)),
              Errc::invalid_argument);
  }
  // The largest element size times the largest capacity is refused for
  // memory, not wrapped: 2^30 * 1024 bytes is 1 TiB.
  RingOptions o;
  o.elem_size = 1024;
  EXPECT_TRUE(refused(code_of([&] { Ring::create(*rt_, "widest", Ring::kMaxCapacity, o); }, "a 1 TiB ring")));
  // Counts larger than the ring on a live ring move nothing (bulk) or what fits (burst).
  auto r = Ring::create(*rt_, "small", 8);
  void* objs[16] = {};
  EXPECT_EQ(r.enqueue_bulk(objs, 16), 0u);
  EXPECT_EQ(r.enqueue_burst(objs, 16), 8u);
  EXPECT_EQ(r.dequeue_bulk(objs, 16), 0u);
  EXPECT_EQ(r.dequeue_burst(objs, 16), 8u);
}

TEST_F(SizeLimitsTest, MempoolCountsAndSizesNear2To32AreRefused) {
  struct Case {
    uint32_t n, elt;
  };
  for (Case c : {Case{kMax32, kMax32}, Case{kMax32, 64}, Case{64, kMax32}, Case{(1u << 30) + 1, 64},
                 Case{64, (1u << 20) + 1}, Case{0, 64}, Case{64, 0}})
    EXPECT_EQ(code_of([&] { Mempool::create(*rt_, "big", c.n, c.elt); },
                      "pool of " + std::to_string(c.n) + " x " + std::to_string(c.elt)),
              Errc::invalid_argument)
        << c.n << " x " << c.elt;
  // Within each bound but far beyond the memory: no_memory, not a wrap.
  EXPECT_TRUE(refused(code_of([&] { Mempool::create(*rt_, "vast", 1u << 30, 1u << 20); }, "a 1 PiB pool")));
  MempoolOptions o;
  o.cache_size = kMax32;
  EXPECT_EQ(code_of([&] { Mempool::create(*rt_, "cached", 1024, 64, o); }, "a cache of 2^32-1"), Errc::invalid_argument);
  auto pool = Mempool::create(*rt_, "ok", 64, 64);
  void* objs[Mempool::kMaxBulk + 1] = {};
  EXPECT_FALSE(pool.get_bulk(objs, Mempool::kMaxBulk + 1)) << "more than kMaxBulk at once must be refused";
  EXPECT_FALSE(pool.get_bulk(objs, 0));
}

TEST_F(SizeLimitsTest, ChannelPayloadsNear2To64AreRefusedBeforeTheyAreRead) {
  // Spans that claim far more than the 16 bytes behind them: refused on
  // their length alone, before a byte is copied.
  const uint8_t bytes[16] = {};
  for (size_t len : {size_t(kMax64), size_t(kMax64 - 15), Channel::kMaxPayload + 1}) {
    const std::span<const uint8_t> claim(bytes, len);
    EXPECT_EQ(code_of([&] { rt_->channel().send(rt_->self().id, "x", claim); }, "a send of " + std::to_string(len)),
              Errc::invalid_argument);
    EXPECT_EQ(code_of([&] { rt_->channel().send_all("x", claim); }, "a send_all of " + std::to_string(len)),
              Errc::invalid_argument);
    EXPECT_EQ(code_of([&] { rt_->channel().request_all("x", claim, Channel::Timeout(100)); },
                      "a request_all of " + std::to_string(len)),
              Errc::invalid_argument);
  }
}

}  // namespace
}  // namespace mpod
