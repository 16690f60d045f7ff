// Ring: creation, lookup and the slow waits. The layout, the memory orderings
// and the enqueue/dequeue fast paths are inline in mpod/detail/ring_ops.hpp.
#include "mpod/ring.hpp"

#include <bit>
#include <cstring>
#include <new>

#include <sched.h>

#include "../os/os.hpp"
#include "object_header.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "mpod/memzone.hpp"
#include "mpod/runtime.hpp"

namespace mpod {

namespace {
constexpr uint32_t kRingMagic = 0x474e4952;  // "RING"
constexpr uint32_t kRingVersion = 9;  // 2: indices 128 bytes apart; 3: each side's seen tail; 4: heads and tails on separate lines; 5: only producers keep a seen tail; 6: yield_when_idle, one claim in flight per side; 7: a claim stuck behind a stopped one is withdrawn; 8: each side's published tail also on its head's line; 9: only the producers' (single producers refresh it)
constexpr const char* kPrefix = "RG_";
}  // namespace

namespace {

using Header = Ring::Header;
constexpr size_t kSlotsOffset = offsetof(Header, slots);

// The ring's geometry from its header, checked against the memory it has
// (`bytes` from the header on); throws corrupt naming the ring if the
// header could not have been written by create().
detail::RingShape checked_shape(const Header* h, uint64_t bytes, std::string_view name) {
  const detail::RingShape s{h->size, h->mask, h->capacity, h->elem_size};
  const bool sound = std::has_single_bit(s.size) && s.size <= std::bit_ceil(Ring::kMaxCapacity) &&
                     s.mask == s.size - 1 && s.capacity >= 1 && s.capacity <= s.size && s.elem_size >= 4 &&
                     s.elem_size % 4 == 0 && s.elem_size <= 1024 &&
                     bytes >= kSlotsOffset && uint64_t(s.size) * s.elem_size <= bytes - kSlotsOffset;
  if (!sound)
    throw Error(Errc::corrupt, "ring '" + std::string(name) + "' is corrupt: its header (size " + std::to_string(s.size) +
                                   ", mask " + std::to_string(s.mask) + ", capacity " + std::to_string(s.capacity) +
                                   ", element size " + std::to_string(s.elem_size) +
                                   ") does not fit the memory it has; destroy and recreate it");
  return s;
}

std::string memzone_name(std::string_view name) { return kPrefix + std::string(name); }

void validate_ring_name(std::string_view name) {
  if (name.empty() || name.size() > Ring::kMaxNameLen)
    throw Error(Errc::invalid_argument, "ring name '" + std::string(name) + "' must be 1 to " +
                                            std::to_string(Ring::kMaxNameLen) + " characters");
  Memzones::validate_name(memzone_name(name));
}

}  // namespace

namespace detail {

// A claimer that is running publishes within nanoseconds; one that has not
// after this many pauses (a microsecond or so) is probably preempted, and
// the CPU is better given to it than spent spinning.
constexpr uint32_t kSpinsBeforeYield = 16;
// A caller that found the ring empty (full) this many times in a row, with
// nothing of the other side moving, yields once (RingOptions::
// yield_when_idle): 10-40 us of polling per yield, so on a CPU of its own
// the ~0.5 us syscall costs a few percent of idle polling and never comes
// while elements flow.
constexpr uint32_t kIdlePollsBeforeYield = 1024;

bool ring_wait_turn(std::atomic<uint32_t>& head, const std::atomic<uint32_t>& tail, uint32_t start, uint32_t end) noexcept {
  // While the tail moves, the claims ahead are being published by running
  // threads and ours comes soon: spin. When it stands still, the claim at
  // its front is probably held by a preempted thread, which may need a time
  // slice to publish. Waiting holding our claim would make every later
  // claimer wait for us in turn (8 threads on 2 CPUs then settle into a
  // round-robin of yields, docs/data-plane.md): withdraw it if no one has
  // claimed after us, and yield holding nothing.
  uint32_t last = tail.load(std::memory_order_acquire), still = 0;
  while (last != start) {
    if (++still % kSpinsBeforeYield == 0) {
      uint32_t ours = end;
      // Release: whoever claims these slots next is ordered after our copy.
      const bool withdrawn = head.compare_exchange_strong(ours, start, std::memory_order_acq_rel, std::memory_order_relaxed);
      ::sched_yield();
      if (withdrawn) return false;
    } else {
      os::cpu_relax();
    }
    const uint32_t now = tail.load(std::memory_order_acquire);
    if (now != last) still = 0;
    last = now;
  }
  return true;
}

namespace {
// What this thread last saw of another side's tail when it found the ring
// full or empty, across calls.
struct InFlightWatch {
  const void* tail;
  uint32_t seen;   // that tail's value
  uint32_t polls;  // calls since, that found the ring full (empty) with that same tail
};
thread_local InFlightWatch t_in_flight{};
}  // namespace

bool ring_wait_in_flight(const std::atomic<uint32_t>& head, const std::atomic<uint32_t>& tail, uint32_t tail_now,
                         bool idle_yield) noexcept {
  // Usually a full (empty) ring is just that, or the other side's claimer
  // is running and publishes within nanoseconds: report at once. Reading
  // the other side's head on every such call would take its line away from
  // a claimer about to CAS it; only after kSpinsBeforeYield calls of this
  // thread that saw the same tail do we look whether a claim is in flight
  // (its owner is then probably preempted) and give it the CPU.
  auto& w = t_in_flight;
  if (w.tail != &tail || w.seen != tail_now) {
    w = InFlightWatch{&tail, tail_now, 0};
    return false;
  }
  if (++w.polls % kSpinsBeforeYield != 0) return false;
  if (head.load(std::memory_order_relaxed) == tail_now) {  // nothing in flight: really full or empty
    // Idle this long: if the other side's threads are waiting for a CPU,
    // give them ours (a poller would otherwise keep it for its time slice).
    if (!idle_yield || w.polls < kIdlePollsBeforeYield) return false;
    w.polls = 0;
  }
  ::sched_yield();
  return tail.load(std::memory_order_relaxed) != tail_now;
}

}  // namespace detail

Ring Ring::create(Runtime& rt, std::string_view name, uint32_t capacity, RingOptions o) {
  validate_ring_name(name);
  if (capacity == 0 || capacity > kMaxCapacity)
    throw Error(Errc::invalid_argument, "ring '" + std::string(name) + "': capacity " + std::to_string(capacity) +
                                            " is not allowed; give 1 to " + std::to_string(kMaxCapacity));
  if (o.elem_size == 0 || o.elem_size % 4 != 0 || o.elem_size > 1024)
    throw Error(Errc::invalid_argument, "ring '" + std::string(name) + "': element size " + std::to_string(o.elem_size) +
                                            " must be a multiple of 4 from 4 to 1024");
  if (o.producers == Sync::by_ring || o.consumers == Sync::by_ring)
    throw Error(Errc::invalid_argument, "ring '" + std::string(name) + "': choose single or multi producers and consumers");
  const uint32_t size = std::bit_ceil(capacity);
  Memzone mz;
  try {
    mz = rt.memzones().reserve(memzone_name(name), kSlotsOffset + uint64_t(size) * o.elem_size, alignof(Header));
  } catch (const Error& e) {
    if (e.code() == Errc::already_exists)
      throw Error(Errc::already_exists, "a ring named '" + std::string(name) + "' already exists in " + rt.domain_dir() +
                                            "; look it up with Ring::lookup or choose another name");
    throw Error(e.code(), "cannot create ring '" + std::string(name) + "' of " + std::to_string(capacity) + " x " +
                              std::to_string(o.elem_size) + " bytes: " + e.what());
  }
  auto* h = new (mz.addr) Header{};
  h->version = kRingVersion;
  h->capacity = capacity;
  h->size = size;
  h->mask = size - 1;
  h->elem_size = o.elem_size;
  h->producers = o.producers;
  h->consumers = o.consumers;
  h->yield_when_idle = o.yield_when_idle;
  std::memcpy(h->name, name.data(), name.size());
  std::atomic_ref<uint32_t>(h->magic).store(kRingMagic, std::memory_order_release);
  return Ring(h, detail::RingShape{size, size - 1, capacity, o.elem_size});
}

Ring Ring::lookup(Runtime& rt, std::string_view name) {
  validate_ring_name(name);
  auto mz = rt.memzones().lookup(memzone_name(name));
  if (!mz)
    throw Error(Errc::not_found, "no ring named '" + std::string(name) + "' in " + rt.domain_dir() +
                                     "; create it first, or check the name and --file-prefix");
  auto* h = static_cast<Header*>(mz->addr);
  wait_initialised(*mz, &h->magic, kRingMagic, &h->version, kRingVersion, "ring", name);
  return Ring(h, checked_shape(h, mz->len, name));
}

std::vector<Ring> Ring::list(Runtime& rt) {
  std::vector<Ring> out;
  for (auto& z : rt.memzones().list()) {
    if (!z.name.starts_with(kPrefix) || z.len < kSlotsOffset) continue;
    auto* h = static_cast<Header*>(z.addr);
    if (std::atomic_ref<uint32_t>(h->magic).load(std::memory_order_acquire) != kRingMagic) continue;
    try {
      out.push_back(Ring(h, checked_shape(h, z.len, z.name)));
    } catch (const Error& e) {
      MPOD_LOG(memzone, warning, "%s", e.what());
    }
  }
  return out;
}

void Ring::destroy(Runtime& rt, std::string_view name) {
  validate_ring_name(name);
  try {
    rt.memzones().free(memzone_name(name));
  } catch (const Error& e) {
    if (e.code() == Errc::not_found) throw Error(Errc::not_found, "no ring named '" + std::string(name) + "' to destroy");
    throw;
  }
}

unsigned Ring::count() const noexcept {
  // Consumers' tail first: the producers' tail read after it is never behind it.
  const uint32_t cons = h_->cons_tail.load(std::memory_order_acquire);
  const uint32_t prod = h_->prod_tail.load(std::memory_order_acquire);
  const uint32_t n = prod - cons;
  return n > shape_.capacity ? shape_.capacity : n;  // the two loads are not one snapshot
}
unsigned Ring::free_count() const noexcept { return shape_.capacity - count(); }
unsigned Ring::capacity() const noexcept { return shape_.capacity; }
uint32_t Ring::elem_size() const noexcept { return shape_.elem_size; }
bool Ring::yields_when_idle() const noexcept { return h_->yield_when_idle; }
std::string Ring::name() const { return std::string(h_->name, strnlen(h_->name, sizeof h_->name)); }

}  // namespace mpod
