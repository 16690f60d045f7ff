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
// move as many as they can. Every call returns at once: a full or empty ring
// is reported, never waited on.
//
// Like rte_ring, a multi-producer (or consumer) that is preempted between
// reserving slots and publishing them holds back later ones of its kind
// until it runs again; mpod's waiters yield the CPU instead of spinning
// through their time slice, which is what keeps rings fast with more
// threads than cores. A process killed in that window blocks the ring's
// producers (or consumers) for good: recreate the ring (see docs/data-plane.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mpod {

class Runtime;

enum class Sync : uint8_t {
  multi,   // any number of threads and processes at once
  single,  // one thread at a time (the caller guarantees it)
  by_ring  // per-call: use the mode chosen at creation
};

struct RingOptions {
  uint32_t elem_size = 8;     // bytes per element: a multiple of 4, at most 1024
  Sync producers = Sync::multi;
  Sync consumers = Sync::multi;
};

class Ring {
 public:
  static constexpr uint32_t kMaxCapacity = 1u << 30;
  static constexpr size_t kMaxNameLen = 28;  // "RG_" + name fits a memzone name

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
  // remained after the call.
  unsigned enqueue_bulk(void* const* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* free_left = nullptr) noexcept;
  unsigned enqueue_burst(void* const* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* free_left = nullptr) noexcept;
  unsigned dequeue_bulk(void** objs, unsigned n, Sync sync = Sync::by_ring, unsigned* available_left = nullptr) noexcept;
  unsigned dequeue_burst(void** objs, unsigned n, Sync sync = Sync::by_ring, unsigned* available_left = nullptr) noexcept;
  bool enqueue(void* obj, Sync sync = Sync::by_ring) noexcept { return enqueue_bulk(&obj, 1, sync) == 1; }
  bool dequeue(void** obj, Sync sync = Sync::by_ring) noexcept { return dequeue_bulk(obj, 1, sync) == 1; }

  // Fixed-size records: `objs` points at n * elem_size() bytes.
  unsigned enqueue_bulk_elem(const void* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* free_left = nullptr) noexcept;
  unsigned enqueue_burst_elem(const void* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* free_left = nullptr) noexcept;
  unsigned dequeue_bulk_elem(void* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* available_left = nullptr) noexcept;
  unsigned dequeue_burst_elem(void* objs, unsigned n, Sync sync = Sync::by_ring, unsigned* available_left = nullptr) noexcept;

  // A snapshot: exact when no call is in flight.
  unsigned count() const noexcept;
  unsigned free_count() const noexcept;
  unsigned capacity() const noexcept;
  uint32_t elem_size() const noexcept;
  std::string name() const;

  struct Header;  // in shared memory; see src/objects/ring.cpp

 private:
  explicit Ring(Header* h) noexcept : h_(h) {}
  Header* h_ = nullptr;
};

}  // namespace mpod
