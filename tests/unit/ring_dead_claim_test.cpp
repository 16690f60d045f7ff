// Claims of dead processes (detail/ring_ops.hpp, claim_word.hpp): a claim
// left between its CAS and its publish by a process that died is withdrawn
// by whoever it holds up, once its owner is known dead; a live owner's claim
// never is. Here the dead claims are made by hand, with the tag of a claim
// owner whose process never registered (dead to the registry), on a ring of
// 7 in plain memory; the live side uses this process's own tag. The same
// with real processes SIGKILLed inside a call: tests/integration/
// ring_test.cpp (RingAcrossPods.AClaimerKilled*).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "mpod/ring.hpp"
#include "src/runtime/claim_owners.hpp"
#include "tests/helpers/in_process_runtime.hpp"

namespace mpod {
namespace {

using Clock = std::chrono::steady_clock;

void* item(uintptr_t v) { return reinterpret_cast<void*>(v); }

class RingDeadClaim : public test::InProcessRuntime {
 protected:
  RingDeadClaim() : InProcessRuntime("deadclaim", 16) {}
  void SetUp() override {
    InProcessRuntime::SetUp();
    h = new (mem) detail::RingHeader{};
    h->capacity = 7;
    h->size = 8;
    h->mask = 7;
    h->elem_size = sizeof(void*);
    h->producers = h->consumers = Sync::multi;
    std::memcpy(h->name, "dead_claims", 11);
    me = std::make_unique<detail::ClaimOwners>(table.get(), rt_->domain_dir(), rt_->self().id);
    dead = std::make_unique<detail::ClaimOwners>(table.get(), rt_->domain_dir(), ProcessId::random());
    ASSERT_NE(me->tag(), detail::kClaimUnknown);
    ASSERT_NE(dead->tag(), detail::kClaimUnknown);
  }

  detail::RingCaller caller() const { return detail::RingCaller{me->tag(), me.get()}; }
  unsigned put(uintptr_t v) {
    void* o = item(v);
    return detail::ring_move<true, true>(h, shape, caller(), &o, 1, Sync::multi, detail::Amount::all, nullptr);
  }
  unsigned take(void** out, unsigned n) {
    return detail::ring_move<false, true>(h, shape, caller(), out, n, Sync::multi, detail::Amount::most, nullptr);
  }
  // A claim of k slots by `owner` on top of a side's head, as its CAS leaves it.
  static void claim_by(std::atomic<uint64_t>& head, const detail::ClaimOwners& owner, unsigned k) {
    head.store(detail::claim_word(head.load(), k, owner.tag()));
  }
  // Calls `call` until it returns nonzero, for at most `limit`; how long it took.
  template <typename Call>
  static Clock::duration until_it_moves(Call call, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto t0 = Clock::now();
    while (call() == 0 && Clock::now() - t0 < limit) {
    }
    return Clock::now() - t0;
  }

  std::unique_ptr<ClaimOwnerTable> table = std::make_unique<ClaimOwnerTable>();
  std::unique_ptr<detail::ClaimOwners> me, dead;
  alignas(detail::RingHeader) unsigned char mem[sizeof(detail::RingHeader) + 8 * sizeof(void*)]{};
  detail::RingHeader* h = nullptr;
  const detail::RingShape shape{8, 7, 7, sizeof(void*)};
};

TEST_F(RingDeadClaim, TheTagsOfAProcessThatNeverRegisteredAreDeadAndOursAlive) {
  EXPECT_TRUE(me->alive(me->tag()));
  EXPECT_FALSE(me->alive(dead->tag()));
  EXPECT_TRUE(me->alive(detail::kClaimUnknown)) << "an unknown owner must never be taken for dead";
  // A slot given back, then taken again, no longer matches the old tag.
  const uint32_t old = dead->tag();
  dead->release();
  EXPECT_FALSE(me->alive(old));
  detail::ClaimOwners again(table.get(), rt_->domain_dir(), rt_->self().id);
  EXPECT_NE(again.tag(), old);
}

TEST_F(RingDeadClaim, AProducerBehindADeadProducersClaimWithdrawsItAndTheItemsComeInOrder) {
  ASSERT_EQ(put(1), 1u);
  // The dead producer claimed slots 1 and 2 and wrote garbage into one.
  claim_by(h->prod_head, *dead, 2);
  reinterpret_cast<void**>(h->slots)[1] = item(0xbad);
  const auto took = until_it_moves([&] { return put(2); });
  EXPECT_LT(took, std::chrono::seconds(1)) << "blocked behind a dead producer's claim";
  ASSERT_EQ(put(3), 1u);
  void* out[7];
  ASSERT_EQ(take(out, 7), 3u) << "the dead claim's slots were delivered";
  EXPECT_EQ(out[0], item(1));
  EXPECT_EQ(out[1], item(2));
  EXPECT_EQ(out[2], item(3));
  EXPECT_EQ(h->repairs.lost.load(), 2u) << "the dead producer's two slots count as lost";
}

TEST_F(RingDeadClaim, AConsumerBehindADeadConsumersClaimGetsItsElementsBackNothingLost) {
  for (uintptr_t v = 1; v <= 3; ++v) ASSERT_EQ(put(v), 1u);
  claim_by(h->cons_head, *dead, 1);  // item 1, copied out by a call that never returned
  void* out[7];
  unsigned got = 0;
  const auto took = until_it_moves([&] { return got = take(out, 7); });
  EXPECT_LT(took, std::chrono::seconds(1));
  ASSERT_EQ(got, 3u) << "the dead consumer's element must come back, once";
  EXPECT_EQ(out[0], item(1));
  EXPECT_EQ(out[2], item(3));
  EXPECT_EQ(take(out, 7), 0u);
  EXPECT_EQ(h->repairs.lost.load(), 0u);
}

TEST_F(RingDeadClaim, TwoAdjacentClaimsOfOneDeadProcessAreWithdrawnTogether) {
  // Two threads of the dead process claimed one slot each, one after the other.
  claim_by(h->prod_head, *dead, 1);
  claim_by(h->prod_head, *dead, 1);
  EXPECT_LT(until_it_moves([&] { return put(7); }), std::chrono::seconds(1));
  void* out[7];
  ASSERT_EQ(take(out, 7), 1u);
  EXPECT_EQ(out[0], item(7));
  EXPECT_EQ(h->repairs.lost.load(), 2u);
}

TEST_F(RingDeadClaim, ConsumersFindingTheRingEmptyWithdrawALastDeadProducerClaim) {
  claim_by(h->prod_head, *dead, 3);  // nobody behind it: only the consumers' polls see it
  void* out[7];
  const auto t0 = Clock::now();
  while (detail::claim_index(h->prod_head.load()) != 0 && Clock::now() - t0 < std::chrono::seconds(10))
    ASSERT_EQ(take(out, 7), 0u) << "delivered a dead producer's slots";
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1)) << "the dead claim was not withdrawn";
  EXPECT_EQ(h->repairs.lost.load(), 3u);
  ASSERT_EQ(put(4), 1u);
  ASSERT_EQ(take(out, 7), 1u);
  EXPECT_EQ(out[0], item(4));
}

TEST_F(RingDeadClaim, ProducersFindingTheRingFullWithdrawALastDeadConsumerClaim) {
  for (uintptr_t v = 1; v <= 7; ++v) ASSERT_EQ(put(v), 1u);
  claim_by(h->cons_head, *dead, 2);
  // Full until the dead claim is withdrawn; then still full (its elements stay).
  const auto t0 = Clock::now();
  while (detail::claim_index(h->cons_head.load()) != 0 && Clock::now() - t0 < std::chrono::seconds(10))
    ASSERT_EQ(put(99), 0u);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1)) << "the dead claim was not withdrawn";
  void* out[7];
  ASSERT_EQ(take(out, 7), 7u);
  for (uintptr_t v = 1; v <= 7; ++v) EXPECT_EQ(out[v - 1], item(v));
}

TEST_F(RingDeadClaim, ALiveOwnersClaimIsNeverWithdrawn) {
  ASSERT_EQ(put(1), 1u);
  // Ours, as if another thread of this process were preempted inside its call.
  claim_by(h->prod_head, *me, 1);
  reinterpret_cast<void**>(h->slots)[1] = item(2);
  std::atomic<bool> done{false};
  std::thread late([&] {
    EXPECT_EQ(put(3), 1u);
    done = true;
  });
  // Fifty times the millisecond after which a waiter asks: it asked, found
  // the owner alive, and waits on.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load()) << "published past a live owner's claim";
  EXPECT_EQ(h->prod_tail.load(), 1u);
  h->prod_tail.store(2, std::memory_order_release);  // the owner publishes
  late.join();
  void* out[7];
  ASSERT_EQ(take(out, 7), 3u);
  EXPECT_EQ(out[1], item(2));
  EXPECT_EQ(out[2], item(3));
  EXPECT_EQ(h->repairs.lost.load(), 0u);
}

}  // namespace
}  // namespace mpod
