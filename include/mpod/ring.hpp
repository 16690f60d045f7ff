// mpod::Ring — a fixed-capacity lock-free FIFO in shared memory (DPDK's rte_ring).
//
// A ring is created by name in a memzone ("RG_<name>") and looked up by name
// from any process of the domain, in any pod; its memory is at the same
// address everywhere, so it can carry pointers into shared memory. Elements
// are pointers (8 bytes) or fixed-size records (a multiple of 4 bytes).
//
// Producers and consumers are each single (one thread at a time, cheapest)
// or multi (any number of threads and processes), chosen at creation and
// overridable per call. Bulk calls move all n elements or none; burst calls
// move as many as they can. No call waits for room or for elements: a full
// or empty ring is reported (after at most the brief wait described next).
//
// Like rte_ring, a multi-producer (or consumer) that is preempted between
// reserving slots and publishing them holds back later ones of its kind
// until it runs again. mpod's rings yield the CPU to it (see
// detail/ring_ops.hpp), which is what keeps them moving with more threads
// than cores: a call that finds the ring full or empty only because a claim
// of the other side is in flight waits a moment for it, yielding once, before
// it reports full or empty. Unlike rte_ring, a process killed in that window
// blocks nobody for long: once the claim has held the others up for a
// millisecond, they find its owner dead and withdraw its claim. A dead
// consumer's elements stay in the ring (its call never returned them); a
// dead producer's, maybe half written, are never delivered, and counted:
// lost_to_dead(). See docs/data-plane.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mpod/detail/ring_ops.hpp"

namespace mpod {

class Runtime;

struct RingOptions {
  uint32_t elem_size = 8;     // bytes per element: a multiple of 4, at most 1024
  Sync producers = Sync::multi;
  Sync consumers = Sync::multi;
  // A thread whose calls find the ring empty (full) 1024 times in a row,
  // with nothing of the other side moving or in flight, yields the CPU once
  // (sched_yield: ~0.5 us when nothing else wants the CPU). With more busy
  // threads than CPUs (a CPU-limited pod), that hands the CPU to the threads
  // that would refill (drain) the ring; without it a poller holds its CPU
  // for its whole time slice. Turn it off for threads on CPUs of their own
  // whose polls must never enter the kernel (DPDK's rings never yield).
  // A claim of the other side seen in flight is yielded to either way.
  bool yield_when_idle = true;
};

class Ring {
 public:
  static constexpr uint32_t kMaxCapacity = 1u << 30;
  static constexpr size_t kMaxNameLen = detail::kRingMaxNameLen;  // "RG_" + name fits a memzone name

  // Creates ring `name` holding up to `capacity` elements (1..kMaxCapacity,
  // any value). Throws invalid_argument (capacity, element size, name),
  // already_exists (a ring of that name exists), no_memory.
  static Ring create(Runtime& rt, std::string_view name, uint32_t capacity, RingOptions options = {});
  // The ring `name`, created by any process. Throws not_found naming it.
  static Ring lookup(Runtime& rt, std::string_view name);
  // Frees its memory. Every process must stop using it first.
  static void destroy(Runtime& rt, std::string_view name);

  // Every ring of the domain, in address order (for mpod info).
  static std::vector<Ring> list(Runtime& rt);

  Ring() = default;
  bool valid() const noexcept { return h_ != nullptr; }

  // Pointer rings (elem_size 8). Return the number moved: n or 0 for bulk,
  // 0..n for burst. `free_left` / `available_left`, when given, receive what
  // remained after the call. Inline: see detail/ring_ops.hpp.
  [[gnu::always_inline]] unsigned enqueue_bulk(void* const* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* free_left = nullptr) noexcept {
    return detail::ring_move<true, true>(h_, shape_, caller_, objs, n, sync, detail::Amount::all, free_left);
  }
  [[gnu::always_inline]] unsigned enqueue_burst(void* const* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* free_left = nullptr) noexcept {
    return detail::ring_move<true, true>(h_, shape_, caller_, objs, n, sync, detail::Amount::most, free_left);
  }
  [[gnu::always_inline]] unsigned dequeue_bulk(void** objs, unsigned n, Sync sync = Sync::by_ring, unsigned* available_left = nullptr) noexcept {
    return detail::ring_move<false, true>(h_, shape_, caller_, objs, n, sync, detail::Amount::all, available_left);
  }
  [[gnu::always_inline]] unsigned dequeue_burst(void** objs, unsigned n, Sync sync = Sync::by_ring, unsigned* available_left = nullptr) noexcept {
    return detail::ring_move<false, true>(h_, shape_, caller_, objs, n, sync, detail::Amount::most, available_left);
  }
  [[gnu::always_inline]] bool enqueue(void* obj, Sync sync = Sync::by_ring) noexcept { return enqueue_bulk(&obj, 1, sync) == 1; }
  [[gnu::always_inline]] bool dequeue(void** obj, Sync sync = Sync::by_ring) noexcept { return dequeue_bulk(obj, 1, sync) == 1; }

  // Fixed-size records: `objs` points at n * elem_size() bytes.
  [[gnu::always_inline]] unsigned enqueue_bulk_elem(const void* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* free_left = nullptr) noexcept {
    return detail::ring_move<true, false>(h_, shape_, caller_, objs, n, sync, detail::Amount::all, free_left);
  }
  [[gnu::always_inline]] unsigned enqueue_burst_elem(const void* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* free_left = nullptr) noexcept {
    return detail::ring_move<true, false>(h_, shape_, caller_, objs, n, sync, detail::Amount::most, free_left);
  }
  [[gnu::always_inline]] unsigned dequeue_bulk_elem(void* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* available_left = nullptr) noexcept {
    return detail::ring_move<false, false>(h_, shape_, caller_, objs, n, sync, detail::Amount::all, available_left);
  }
  [[gnu::always_inline]] unsigned dequeue_burst_elem(void* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* available_left = nullptr) noexcept {
    return detail::ring_move<false, false>(h_, shape_, caller_, objs, n, sync, detail::Amount::most, available_left);
  }

  // A snapshot: exact when no call is in flight.
  unsigned count() const noexcept;
  // Elements lost in enqueues of processes that died inside them: slots a
  // dead producer claimed (maybe half written) are withdrawn, never
  // delivered. Since creation. A dead consumer's claim loses nothing: its
  // call never returned, so its elements stay in the ring.
  uint64_t lost_to_dead() const noexcept;
  unsigned free_count() const noexcept;
  unsigned capacity() const noexcept;
  uint32_t elem_size() const noexcept;
  bool yields_when_idle() const noexcept;  // RingOptions::yield_when_idle, as created
  std::string name() const;

  using Header = detail::RingHeader;  // in shared memory

 private:
  Ring(Header* h, detail::RingShape shape, detail::RingCaller caller) noexcept : h_(h), shape_(shape), caller_(caller) {}
  Header* h_ = nullptr;
  detail::RingShape shape_;  // checked when the ring was created or looked up; never read from h_ again
  detail::RingCaller caller_;  // this process's claim tag, and the liveness test of others'
};

}  // namespace mpod
