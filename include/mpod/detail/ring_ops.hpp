// The ring's shared-memory layout and its enqueue/dequeue, inline so that a
// call compiles down to the few loads, one CAS (multi) and one store DPDK's
// header-only rte_ring compiles to (always_inline, as DPDK does: at -O2 GCC
// would otherwise keep ring_move out of line). Include mpod/ring.hpp, not this.
//
// Each side (producers, consumers) has a head, which claims slots, and a
// tail, which publishes them. Indices run free as uint32 and wrap; a slot is
// index & mask. Producers may fill up to `capacity` slots past the consumers'
// tail; consumers may take up to the producers' tail.
//
// Producers also keep, beside their head, the consumers' tail as a producer
// last read it (prod_seen). The room that value gives is a lower bound, so
// a producer reads the consumers' tail only when that bound is too small: a
// producer that is ahead of its consumer no longer pulls the consumers' line
// to its core on every call. Consumers read the producers' tail on every
// call, as DPDK's do: a consumer that keeps up empties what it saw each time,
// so a seen value would only add a branch and a store (layout version 5). A
// side's head and its tail are on separate lines: the other side polls the
// tail, and its reads then never take away the line the head's CAS needs. A
// seen value more than a ring's worth behind is recognised and re-read; one
// behind by a multiple of 2^32 indices (give or take a ring's worth) is not:
// a thread stopped for 2^32 elements between two instructions, the same
// wrap DPDK's 32-bit head CAS accepts.
//
// Memory orderings:
//  - A producer loads cons_tail with acquire before claiming: the consumers'
//    reads of those slots happened before it overwrites them. A consumer
//    loads prod_tail with acquire before claiming: the producers' writes of
//    those slots are visible to its reads. The seen value is stored with
//    release after that acquire and loaded with acquire, so a producer that
//    uses another producer's seen value is ordered after the same tail store.
//  - Claiming (a head CAS; a single producer/consumer stores its head just
//    before its tail) only arbitrates among threads of one side. But
//    reading the head (first, and on a failed CAS) is acquire, so it is
//    ordered before the read of the other side's tail or seen value (DPDK
//    uses a fence there); the CAS's success order is acquire too, as GCC
//    wants it no weaker than the failure order.
//  - Publishing stores the tail with release after the slots are copied.
//    With several producers (consumers), each first waits, with acquire
//    loads, until the tail reaches its own claim's start: so it publishes
//    after every earlier claim, and by transitivity its release covers their
//    copies too. A claim withdrawn (below) moves the head back with release,
//    so whoever claims those slots next is ordered after its copy.
//  - A multi producer then also stores the new tail, with release, in the
//    producers' `published` word on their head's line (versions 8 and 9),
//    which a multi producer loads (acquire) before its head CAS. The word is never ahead of
//    the tail: every value stored in it is one the tail had already reached
//    (a publisher's new tail, stored after it; a tail value just loaded; a
//    single producer's start, which is its side's tail).
//    So if it equals the start our CAS claimed from, the tail had reached
//    that start before the CAS; and it cannot have passed it, as the tail
//    never passes the head, which the CAS found at that start: every earlier
//    claim is published, and the acquire orders us after their copies.
//    (This holds within one lap of the 32-bit indices: the word must never
//    lag a start by a multiple of 2^32. In version 8 single producers left
//    it alone, so a word left at 0 by single calls matched a multi claim
//    again after 2^32 elements, with no thread stopped, and that claim
//    published past one still in flight; a review found it. Version 9: a
//    single producer stores its start, which is then the tail, in the word
//    whenever it re-reads the consumers' tail (ring_room), and every multi
//    producer call ends by storing either its new tail or, if it moved
//    nothing, a tail it just loaded (ring_moved_nothing; a second review
//    found that a failing multi bulk refreshed the seen value for the
//    single calls after it, which then never re-read). So after every
//    refresh of the seen value the word is at least the tail of that
//    moment (give or take what other threads publish during the few
//    instructions between a thread's tail and word stores), and a single
//    producer moves at most a capacity on one refresh: the word lags the
//    tail by about a capacity (2^30) at most, a start lies at most a
//    capacity past the tail, and a lagging word cannot equal a start, which
//    would take a lag of 2^32 minus a capacity (at least 3 * 2^30). Storing
//    it on every single publish instead cost the one-thread SP/SC burst 1
//    row a sixth of its speed, a branch on crossing 2^30 still 15% (A/B). A
//    lag that large needs a thread stopped between its tail and word
//    stores, or between loading the word and its CAS, for about that many
//    elements: the wrap the paragraph above accepts. Three reviews went
//    over this argument; the third found no hole.)
//    Then the claimer does not read the tail at all. Why it matters: the
//    other side polls the tail, and on this machine (AMD EPYC under KVM)
//    the publisher's load of it after the CAS missed, a second line crossing
//    per call after the one the CAS waits for (the store buffer's drain).
//    Two processes, MP/MC, DPDK/mpod per pair: burst 8 0.95-0.98 -> 1.53,
//    burst 32 0.99-1.16 -> 1.46 (A/B, docs/data-plane.md). A word behind
//    the tail (a slower publisher overwrote a newer value) only sends the
//    claimer to the tail, as before. Consumers have no such word: producers
//    read the consumers' tail only to refresh their seen value, so a
//    consumer's check finds that line on its own core (version 9 dropped
//    version 8's consumer word: no change in the A/B rows).
//
// More threads than CPUs (version 7): a thread preempted between claiming
// and publishing holds back every later claim of its side, and — because
// nothing past its claim is published — the other side too. DPDK's rings
// then spin for whole time slices. A waiter that yields while holding its
// own claim makes the next claimer wait for it in turn: 8 threads on 2 CPUs
// settled into a round-robin of yields (a switch every ~5 us, ~4 elements
// moved per switch; version 5). So a claimer whose turn does not come
// (ring_wait_turn: the tail still for 16 pauses) withdraws its claim if no
// one claimed after it (head back to its start), yields holding nothing,
// and claims again. Claims still overlap their copies while every claimer
// runs. (Version 6 instead let a side claim only while none of its claims
// was in flight, as DPDK's HTS mode does; that serialised two threads on
// two CPUs: the uncached two-thread mempool row went from 5.2 to 6.2-6.9
// ns per object.) A thread whose calls keep finding the ring empty (full)
// with the other side's tail unmoved yields once (ring_wait_in_flight):
// on the 16th such call if a claim of the other side is in flight, on the
// 1024th in any case if the ring yields when idle
// (RingOptions::yield_when_idle), so a poller hands its CPU to the threads
// that would move the ring.
//
// Claims of dead processes (layout version 10). Each side's head is a
// 64-bit word (detail/claim_word.hpp): the index, and the owner and run of
// the claims just below it, all written by the CAS that claims. A claimer
// whose turn does not come knows, from the value its CAS replaced, whose
// claims lie just before its own. Once the tail has stood still for a
// millisecond it asks whether that owner is alive. If it is dead and its
// run reaches down to the tail, the dead claims are withdrawn as a stalled
// claim is: when ours is the last claim, one CAS moves the head from our
// claim back to the tail, and we claim again from there (ring_wait_turn).
// A call that finds the ring full or empty because of a claim of the other
// side asks the same of that side's head word, and withdraws the dead
// claims if they are the last (ring_wait_in_flight). Withdrawn, a dead
// consumer's claim gives its elements back (its call never returned them);
// a dead producer's slots, maybe half written, are never published: its
// elements are lost, and counted (RingRepairs::lost). A single call's claim
// is complete when its head is stored: found unpublished, it is published.
// The fast paths pay no store and no load for any of this: see
// docs/data-plane.md.

#pragma once

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "mpod/detail/claim_word.hpp"
#include "mpod/detail/pointer_copy.hpp"

#if defined(__SANITIZE_THREAD__)
#define MPOD_RING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MPOD_RING_TSAN 1
#endif
#endif
#ifdef MPOD_RING_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace mpod {

enum class Sync : uint8_t {
  multi,   // any number of threads and processes at once
  single,  // one thread at a time (the caller guarantees it)
  by_ring  // per-call: use the mode chosen at creation
};

namespace detail {

inline constexpr size_t kRingMaxNameLen = 28;  // "RG_" + name fits a memzone name

// What repairs of dead processes' claims leave: on a block of its own,
// written only by repairs.
struct RingRepairs {
  std::atomic<uint64_t> lost;  // elements dead producers claimed and never published
};

struct RingHeader {
  uint32_t magic;  // written last (release): the ring is usable from then on
  uint32_t version;
  uint32_t capacity;
  uint32_t size;  // slots: a power of two >= capacity
  uint32_t mask;
  uint32_t elem_size;
  Sync producers;
  Sync consumers;
  bool yield_when_idle;  // RingOptions::yield_when_idle
  char name[kRingMaxNameLen + 1];
  // Each side's head (the producers' with their seen value) and its tail on
  // lines of their own, 128 bytes apart so the adjacent-line prefetcher does
  // not pair them.
  // The other side polls only our tail: its reads never take away the line
  // our head CAS needs, so a multi-producer's claim and its publish each
  // find their line where they left it (one line crossing per call, not two
  // when the other side reads between them).
  alignas(128) std::atomic<uint64_t> prod_head;  // the index and who claimed below it: detail/claim_word.hpp
  std::atomic<uint32_t> prod_seen;  // cons_tail as a producer last read it
  // The producers' tail as the last producer to store it left it (maybe an
  // older value than another's), on the head's line (layout version 9):
  // see "Memory orderings" above.
  std::atomic<uint32_t> prod_published;
  alignas(128) std::atomic<uint32_t> prod_tail;
  alignas(128) std::atomic<uint64_t> cons_head;
  alignas(128) std::atomic<uint32_t> cons_tail;
  alignas(128) RingRepairs repairs;
  alignas(128) unsigned char slots[1];  // size * elem_size bytes
};
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "ring indices are shared between processes: lock-free only");
static_assert(std::is_standard_layout_v<RingHeader> && alignof(RingHeader) == 128);
static_assert(offsetof(RingHeader, prod_tail) - offsetof(RingHeader, prod_head) == 128 &&
                  offsetof(RingHeader, cons_head) - offsetof(RingHeader, prod_tail) == 128 &&
                  offsetof(RingHeader, cons_tail) - offsetof(RingHeader, cons_head) == 128 &&
                  offsetof(RingHeader, repairs) - offsetof(RingHeader, cons_tail) == 128 &&
                  offsetof(RingHeader, slots) - offsetof(RingHeader, repairs) == 128,
              "layout versions 4 and 5: each head and each tail on a 128-byte block of its own");

// A ring's geometry as this process took it when it created or looked the
// ring up, checked against the memory the ring has. The header is the
// group's to write: a call never takes these from it, so a header rewritten
// by another process cannot move a copy outside the ring's slots.
struct RingShape {
  uint32_t size = 0;      // slots: a power of two
  uint32_t mask = 0;      // size - 1
  uint32_t capacity = 0;  // 1..size
  uint32_t elem_size = 0;
};

enum class Amount : uint8_t { all, most };  // bulk, burst

class ClaimOwners;  // src/runtime/claim_owners.hpp

// Who calls: the tag this process's claims carry, and the test of other
// tags' liveness (null: none; claims are then never repaired).
struct RingCaller {
  uint32_t tag = kClaimUnknown;
  const ClaimOwners* owners = nullptr;
};

// Out of line (src/objects/ring.cpp): the waits, rare and slow by nature.
// A multi claimer of [start, end) waits until its side's tail reaches
// `start` (every earlier claim published; acquire). When the tail has not
// moved for kSpinsBeforeYield pauses, the claim ahead is probably held by a
// preempted thread: if ours is the last claim (head == end) it withdraws it
// (head back to start, release), yields, and returns false: the caller
// claims again, holding nothing while others run. Otherwise it yields and
// waits on. Returns true when it is the caller's turn to publish.
// `claim` is the head word our CAS wrote, `pred` the one it replaced: when
// the tail has stood still for a millisecond, the claims just before ours
// are repaired if their owner is dead (see "Claims of dead processes").
bool ring_wait_turn(RingHeader* h, bool producers, uint64_t claim, uint64_t pred, RingCaller caller) noexcept;
// Called when a call found the ring full (empty) with the other side's tail
// at `tail_now`. Counts, per thread, the calls that found that same tail;
// on every kSpinsBeforeYield-th, if the other side has a claim in flight
// (its head != tail: a claimer probably preempted), yields the CPU once;
// with `idle_yield`, on the kIdlePollsBeforeYield-th (1024) it yields even
// with nothing in flight (the threads that would move the ring may be
// waiting for a CPU). Returns whether the tail has moved since it yielded
// (worth another try). A claim in flight that has held the tail still for a
// millisecond is repaired if its owner is dead. `producers`: the caller is
// a producer (it found the ring full).
bool ring_wait_in_flight(RingHeader* h, bool producers, uint32_t tail_now, RingCaller caller) noexcept;


inline bool ring_is_single(Sync call, Sync ring) noexcept { return (call == Sync::by_ring ? ring : call) == Sync::single; }

// Copies n elements between `objs` and the slots from index `at` on,
// wrapping around. kPointers: elements are 8 bytes (the pointer API).
template <bool kPointers, bool kIn>
[[gnu::always_inline]] inline void ring_copy(RingHeader* h, const RingShape& shape, uint32_t at,
                                             std::conditional_t<kIn, const void*, void*> objs, unsigned n) noexcept {
  const uint32_t idx = at & shape.mask;
  if constexpr (kPointers) {
    auto* slots = reinterpret_cast<AliasWord*>(h->slots);
    if (idx + n <= shape.size) [[likely]] {  // n itself, often a constant (1 for enqueue(obj))
      if constexpr (kIn) copy_pointers(slots + idx, objs, n); else copy_pointers(objs, slots + idx, n);
      return;
    }
    // Wrapping: rare, and kept scalar so the common path stays small.
    auto* o = static_cast<std::conditional_t<kIn, void* const*, void**>>(objs);
    auto* p = reinterpret_cast<void**>(h->slots);
    for (unsigned i = 0; i < n; ++i) {
      const uint32_t slot = (idx + i) & shape.mask;
      if constexpr (kIn) p[slot] = o[i]; else o[i] = p[slot];
    }
  } else {
    const uint32_t esz = shape.elem_size;
    using Byte = std::conditional_t<kIn, const unsigned char, unsigned char>;
    auto* o = static_cast<Byte*>(objs);
    const unsigned first = idx + n <= shape.size ? n : shape.size - idx;
    unsigned char* at_idx = h->slots + size_t(idx) * esz;
    if constexpr (kIn) {
      std::memcpy(at_idx, o, size_t(first) * esz);
      if (n > first) std::memcpy(h->slots, o + size_t(first) * esz, size_t(n - first) * esz);
    } else {
      std::memcpy(o, at_idx, size_t(first) * esz);
      if (n > first) std::memcpy(o + size_t(first) * esz, h->slots, size_t(n - first) * esz);
    }
  }
}

// The room a side has from index `start`; `other` receives the other side's
// tail value it used. Consumers: the elements the producers have published.
// Producers: the free slots, from the consumers' tail as a producer last saw
// it; when that gives too little, or more than the ring holds (a seen value
// older than our head by more than a ring's worth, stored by another
// producer long ago, or newer than the head we read), reads the consumers'
// tail and stores it if it changed (a store takes our head's line from the
// other producers). A single producer, whose start is its side's tail, then
// also stores that in the published word: between two re-reads it moves at
// most a capacity, which bounds how far the word lags (see Memory
// orderings), at no cost to its fast path.
template <bool kEnqueue>
[[gnu::always_inline]] inline unsigned ring_room(RingHeader* h, const RingShape& shape, uint32_t start, unsigned n,
                                                 uint32_t& other, bool single) noexcept {
  if constexpr (!kEnqueue) {
    other = h->prod_tail.load(std::memory_order_acquire);
    return other - start;
  }
  std::atomic<uint32_t>& seen = h->prod_seen;
  const uint32_t capacity = shape.capacity;
  other = seen.load(std::memory_order_acquire);
  unsigned room = capacity + other - start;
  if (room < n || room > capacity) [[unlikely]] {
    const uint32_t was_seen = other;
    other = h->cons_tail.load(std::memory_order_acquire);
    if (other != was_seen) seen.store(other, std::memory_order_release);
    if (single) h->prod_published.store(start, std::memory_order_release);
    room = capacity + other - start;
  }
  return room;
}

// How many of n a call moves when it has `room`: bulk all or nothing, burst
// as many as fit. (A lambda for this was not inlined by GCC and cost the
// one-thread rows most of their speed; always_inline keeps the code as if
// written out.)
[[gnu::always_inline]] inline unsigned ring_amount(unsigned n, unsigned room, Amount amount) noexcept {
  return n <= room ? n : amount == Amount::all ? 0 : room;
}

// What a call that moves nothing returns. A multi producer's call may have
// re-read the consumers' tail into the seen value (ring_room) and then not
// published, which would let single producers after it find room by that
// seen value without re-reading, and so without storing the published word,
// for as long as they liked: it brings the word up to the tail itself (never
// ahead of it; see Memory orderings). Every multi producer call that moves
// nothing (a full ring, a bulk that does not fit, room lost to another
// producer, n == 0) pays the tail's load; it stores only if the word
// differs, so producers polling a full ring do not keep writing the line
// the others' CAS needs.
template <bool kEnqueue>
[[gnu::always_inline]] inline unsigned ring_moved_nothing(RingHeader* h, bool single, unsigned room, unsigned* left) noexcept {
  if constexpr (kEnqueue)
    if (!single) {
      const uint32_t tail = h->prod_tail.load(std::memory_order_acquire);
      if (h->prod_published.load(std::memory_order_relaxed) != tail)
        h->prod_published.store(tail, std::memory_order_release);
    }
  if (left) *left = room;
  return 0;
}

template <bool kEnqueue, bool kPointers>
unsigned ring_move_again(RingHeader* h, const RingShape& shape, RingCaller caller,
                         std::conditional_t<kEnqueue, const void*, void*> objs, unsigned n, Sync sync, Amount amount,
                         unsigned* left) noexcept;

// What ring_move<..., kRetry = true> returns when it withdrew its claim.
inline constexpr unsigned kRingWithdrawn = ~0u;

// One side's claim, copy and publish. kEnqueue: producers (room = free
// slots), else consumers (room = published elements). Returns the number of
// elements moved; *left (if given) receives the room that remained.
// kRetry: called from ring_move_again's loop, which it tells of a withdrawn
// claim with kRingWithdrawn instead of calling it again (no recursion: a
// long stall may withdraw thousands of times).
template <bool kEnqueue, bool kPointers, bool kRetry = false>
[[gnu::always_inline]] inline unsigned ring_move(RingHeader* h, const RingShape& shape, const RingCaller& caller,
                                                 std::conditional_t<kEnqueue, const void*, void*> objs, unsigned n,
                                                 Sync sync, Amount amount, unsigned* left) noexcept {
  assert(!kPointers || shape.elem_size == 8);  // the pointer API is for 8-byte rings
  const bool single = ring_is_single(sync, kEnqueue ? h->producers : h->consumers);
#if defined(__GNUC__)
  // An empty asm that "may change" h: GCC then addresses every field off h
  // in one register, instead of keeping each index's own address (h plus an
  // offset) in a register across the caller's loop, which, with the slow
  // path's calls in that loop, it spilled to the stack and reloaded on
  // every call. A/B, one thread, SP/SC burst 1: 0.90-0.92 of DPDK's rate
  // without, 0.98-1.02 with; burst 32 1.26-1.40 -> 1.50-1.54; the other
  // rows did not move beyond their spread. Not for a multi call of one
  // element known at compile time (enqueue(obj), dequeue(&obj)): there the
  // fields' addresses kept in registers (and on the stack) came out faster,
  // one-thread MP/MC burst 1 0.95-0.96 -> 0.96-0.99 of DPDK's rate (A/B,
  // both benches' loops 64-byte aligned), the other rows unchanged.
  if (single || !(__builtin_constant_p(n) && n == 1)) asm("" : "+r"(h));
#endif
  std::atomic<uint64_t>& head = kEnqueue ? h->prod_head : h->cons_head;
  std::atomic<uint32_t>& tail = kEnqueue ? h->prod_tail : h->cons_tail;
  [[maybe_unused]] const std::atomic<uint32_t>& other_tail = kEnqueue ? h->cons_tail : h->prod_tail;
  // Acquire: our head must be read before the other side's tail; with a
  // relaxed load a weakly ordered CPU could pair a newer head with an older
  // tail and see a huge, wrapped room.
  uint64_t word = head.load(std::memory_order_acquire);
  // Several producers: how far they have published, from the head's line
  // and before claiming (used at the publish, below). Consumers keep no such
  // word: the producers seldom read the consumers' tail (only to refresh
  // their seen value), so it stays on the consumer's core.
  uint32_t published = 0;
  if constexpr (kEnqueue)
    if (!single) published = h->prod_published.load(std::memory_order_acquire);
  uint32_t other;  // the other side's tail as used for the room
  unsigned room = ring_room<kEnqueue>(h, shape, claim_index(word), n, other, single);
  unsigned k = ring_amount(n, room, amount);
  if (k == 0) [[unlikely]] {
    // Full (empty): the other side's tail was just read (room < n made us
    // ask). Maybe wait once for a claim in flight, then look again.
    if (n == 0 || !ring_wait_in_flight(h, kEnqueue, other, caller))
      return ring_moved_nothing<kEnqueue>(h, single, room, left);
    word = head.load(std::memory_order_acquire);
    if (kEnqueue && !single) published = h->prod_published.load(std::memory_order_acquire);
    room = ring_room<kEnqueue>(h, shape, claim_index(word), n, other, single);
    k = ring_amount(n, room, amount);
    if (k == 0) return ring_moved_nothing<kEnqueue>(h, single, room, left);
  }
  // A single side owns its head; the head moves with the tail, below. Several
  // threads claim with a CAS, recomputing the room after a lost race. The
  // word the CAS writes names us as the claimer (claim_word); on success
  // `word` keeps the value it replaced: who claimed just before us.
  uint64_t claim = 0;
  if (!single) {
    for (;;) {
      claim = claim_word(word, k, caller.tag);
      if (head.compare_exchange_weak(word, claim, std::memory_order_acquire, std::memory_order_acquire)) break;
      room = ring_room<kEnqueue>(h, shape, claim_index(word), n, other, single);
      k = ring_amount(n, room, amount);
      if (k == 0)  // another thread took the room: report at once, the caller tries again
        return ring_moved_nothing<kEnqueue>(h, single, room, left);
    }
  }
  const uint32_t start = claim_index(word);
  if (left) *left = room - k;
#ifdef MPOD_RING_TSAN
  // ThreadSanitizer sees only this process. The tail (or seen) value that
  // let us claim may have been stored by another process, whose acquire of
  // this process's earlier tail stores TSan never saw, so it would report
  // our copy as racing with the accesses those stores published. Acquire
  // every release of the other side's tail made in this process so far:
  // the ones whose slots we may now touch are among them.
  __tsan_acquire(const_cast<std::atomic<uint32_t>*>(&other_tail));
#endif
  ring_copy<kPointers, kEnqueue>(h, shape, start, objs, k);
  if (single) {
    // Nobody else claims on our side: the head just follows the tail (the
    // other side reads it only to see whether a claim is in flight). Stored
    // after the copy, with release: a single claim seen in the head is
    // complete, and whoever finds it unpublished (its caller died between
    // the two stores) may publish it (ring_wait_turn, ring_wait_in_flight).
    head.store(start + k, std::memory_order_release);  // owner kClaimSingle (claim_word.hpp)
  } else if (!(kEnqueue && published == start) && tail.load(std::memory_order_acquire) != start) [[unlikely]] {
    // Our turn comes when every earlier claim is published: known at once
    // if a producer's `published`, read before its claim, is its start;
    // otherwise read the tail (for producers a line the consumers' polling
    // keeps taking away), and wait.
    if (!ring_wait_turn(h, kEnqueue, claim, word, caller)) {  // withdrew the claim: claim again
      if constexpr (kRetry) {
        return kRingWithdrawn;
      } else {
        // enqueue(obj) passes &obj: handing that address to the out-of-line
        // retry made GCC keep obj on the stack on every call (a store and a
        // reload more before the next CAS drains the store buffer). A copy
        // made here, on the slow path, leaves obj in a register. A/B, one
        // thread, MP/MC burst 1: 0.96 -> 0.97 of DPDK's rate.
        if constexpr (kEnqueue && kPointers)
          if (__builtin_constant_p(n) && n == 1) {
            void* const one = *static_cast<void* const*>(objs);
            return ring_move_again<kEnqueue, kPointers>(h, shape, caller, &one, n, sync, amount, left);
          }
        return ring_move_again<kEnqueue, kPointers>(h, shape, caller, objs, n, sync, amount, left);
      }
    }
  }
  tail.store(start + k, std::memory_order_release);
  if constexpr (kEnqueue) {
    // After the tail: never ahead of it. (Single producers store the word
    // when they refresh their seen value, in ring_room.)
    if (!single) h->prod_published.store(start + k, std::memory_order_release);
  }
  return k;
}

// ring_move again, until it does not withdraw its claim (ring_wait_turn):
// out of line, so the retry adds nothing to the inline path.
template <bool kEnqueue, bool kPointers>
[[gnu::noinline]] unsigned ring_move_again(RingHeader* h, const RingShape& shape, RingCaller caller,
                                           std::conditional_t<kEnqueue, const void*, void*> objs, unsigned n, Sync sync,
                                           Amount amount, unsigned* left) noexcept {
  for (;;) {
    const unsigned k = ring_move<kEnqueue, kPointers, true>(h, shape, caller, objs, n, sync, amount, left);
    if (k != kRingWithdrawn) return k;
  }
}

}  // namespace detail
}  // namespace mpod
