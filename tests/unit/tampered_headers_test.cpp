// Data-plane headers rewritten by another process of the group (docs/security.md):
// a ring's or mempool's geometry in shared memory is the group's to write, so
// a handle keeps its own checked copy. A handle taken before the header was
// rewritten keeps every copy inside the object (ASan would see a stray one);
// a lookup after it refuses the object as corrupt; a cache length pointing
// past its slots is taken as empty. Each test rewrites the header in place,
// as a member's process mapping the same memory would.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "mpod/heap.hpp"
#include "mpod/memzone.hpp"
#include "mpod/mempool.hpp"
#include "mpod/ring.hpp"
#include "mpod/runtime.hpp"
#include "src/objects/heap_blocks.hpp"
#include "tests/helpers/error_code.hpp"
#include "tests/helpers/in_process_runtime.hpp"

namespace mpod {
namespace {

using test::code_of;

class TamperedHeaders : public test::InProcessRuntime {
 protected:
  TamperedHeaders() : InProcessRuntime("tamper", 64) {}
  detail::RingHeader* ring_header(const std::string& ring_name) {
    auto z = rt_->memzones().lookup("RG_" + ring_name);
    EXPECT_TRUE(z);
    return static_cast<detail::RingHeader*>(z->addr);
  }
};

void* item(uintptr_t i) { return reinterpret_cast<void*>(i * 16); }

TEST_F(TamperedHeaders, RingGeometryRewrittenAfterLookupIsNotUsedAndANewLookupRefusesIt) {
  Ring ring = Ring::create(*rt_, "r", 8);
  auto* h = ring_header("r");
  const detail::RingShape saved{h->size, h->mask, h->capacity, h->elem_size};
  // What a member writes: slots far past the ring's memory.
  h->size = 1u << 30;
  h->mask = (1u << 30) - 1;
  h->capacity = 1u << 30;
  h->elem_size = 1024;
  // The handle from before still moves exactly its 8 slots' worth, in order, many laps.
  for (uintptr_t lap = 0; lap < 50; ++lap) {
    void* in[8];
    for (uintptr_t i = 0; i < 8; ++i) in[i] = item(lap * 8 + i + 1);
    ASSERT_EQ(ring.enqueue_burst(in, 8), 8u) << "capacity is the handle's, not the header's";
    EXPECT_EQ(ring.enqueue(item(999)), false) << "full at 8, whatever the header says";
    void* out[8] = {};
    ASSERT_EQ(ring.dequeue_burst(out, 8), 8u);
    for (uintptr_t i = 0; i < 8; ++i) EXPECT_EQ(out[i], in[i]);
  }
  EXPECT_EQ(ring.capacity(), 8u);
  try {
    Ring::lookup(*rt_, "r");
    ADD_FAILURE() << "a ring whose header does not fit its memory was looked up";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::corrupt);
    EXPECT_NE(std::string(e.what()).find("ring 'r'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(Ring::list(*rt_).empty()) << "listing leaves it out";
  // Each field alone, the others sound.
  auto restore = [&] {
    h->size = saved.size;
    h->mask = saved.mask;
    h->capacity = saved.capacity;
    h->elem_size = saved.elem_size;
  };
  restore();
  EXPECT_NO_THROW(Ring::lookup(*rt_, "r"));
  h->mask = 15;
  EXPECT_EQ(code_of([&] { Ring::lookup(*rt_, "r"); }), Errc::corrupt) << "mask not size - 1";
  restore();
  h->capacity = 9;
  EXPECT_EQ(code_of([&] { Ring::lookup(*rt_, "r"); }), Errc::corrupt) << "capacity past size";
  restore();
  h->elem_size = 16;
  EXPECT_EQ(code_of([&] { Ring::lookup(*rt_, "r"); }), Errc::corrupt) << "slots past the memzone";
  restore();
  h->size = 12;
  h->mask = 11;
  EXPECT_EQ(code_of([&] { Ring::lookup(*rt_, "r"); }), Errc::corrupt) << "size not a power of two";
  restore();
}

TEST_F(TamperedHeaders, MempoolCacheLengthPastItsSlotsIsTakenAsEmpty) {
  Mempool pool = Mempool::create(*rt_, "p", 256, 64, {8, {}});
  void* objs[4];
  ASSERT_TRUE(pool.get_bulk(objs, 4));
  ASSERT_EQ(pool.put_bulk(objs, 4), 4u);
  // This thread's cache, as the inline paths find it.
  auto* cache = detail::t_mempool_last.cache;
  ASSERT_NE(cache, nullptr);
  cache->len.store(1u << 30);  // a member's write: far past the cache's 24 slots
  void* got[4] = {};
  EXPECT_TRUE(pool.get_bulk(got, 4)) << "served from the common pool";
  for (void* p : got) EXPECT_TRUE(pool.contains(p)) << p;
  cache->len.store(1u << 30);
  EXPECT_EQ(pool.put_bulk(got, 4), 4u) << "no write past the cache's slots";
  EXPECT_LE(cache->len.load(), 24u);
  pool.flush_thread_cache();
  // What the cache held each time its length was overwritten (at most its
  // 24 slots) is lost to the pool; nothing else is.
  EXPECT_LE(pool.available(), 256u);
  EXPECT_GE(pool.available(), 256u - 2 * 24u);
}

TEST_F(TamperedHeaders, MempoolHeaderThatDoesNotFitItsMemoryIsRefused) {
  Mempool::create(*rt_, "q", 64, 64, {4, {}});
  auto z = rt_->memzones().lookup("MP_q");
  ASSERT_TRUE(z);
  // The header's fields, as mempool.cpp lays them out: magic, version, n, elt_size, stride, ...
  auto* words = static_cast<uint32_t*>(z->addr);
  const uint32_t n = words[2];
  ASSERT_EQ(n, 64u) << "the test's idea of the layout is out of date";
  words[2] = 1u << 20;  // more objects than the memzone holds
  EXPECT_EQ(code_of([&] { Mempool::lookup(*rt_, "q"); }), Errc::corrupt);
  words[2] = n;
  EXPECT_NO_THROW(Mempool::lookup(*rt_, "q"));
  const uint32_t stride = words[4];
  words[4] = stride + 1;  // not whole lines
  EXPECT_EQ(code_of([&] { Mempool::lookup(*rt_, "q"); }), Errc::corrupt);
  words[4] = stride;
  EXPECT_NO_THROW(Mempool::lookup(*rt_, "q"));
}

// A heap's free-list links are addresses the group can write. One pointing at
// this process's own stack must stop the process before anything is written
// there (the death test's child runs the whole test, SetUp included).
TEST_F(TamperedHeaders, HeapLinkOutsideSharedMemoryStopsTheProcessBeforeWritingThere) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Heap heap = Heap::open(*rt_, "h");
        heap.free(heap.alloc(100));
        auto z = rt_->memzones().lookup("HP_h");
        auto* h = static_cast<Heap::Header*>(z->addr);
        uint64_t victim[16] = {};
        for (auto& head : h->free_heads) head = heap::addr_of(victim);  // what a member writes
        heap.try_alloc(100);
        std::fprintf(stderr, "victim[0]=%llu\n", static_cast<unsigned long long>(victim[0]));
      },
      "outside this process's shared memory");
}

}  // namespace
}  // namespace mpod
