// Ring: creation, lookup and the slow waits. The layout, the memory orderings
// and the enqueue/dequeue fast paths are inline in mpod/detail/ring_ops.hpp.
#include "mpod/ring.hpp"

#include <bit>
#include <cstring>
#include <new>

#include <sched.h>

#include "../os/os.hpp"
#include "../runtime/claim_owners.hpp"
#include "object_header.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "mpod/memzone.hpp"
#include "mpod/runtime.hpp"

namespace mpod {

namespace {
constexpr uint32_t kRingMagic = 0x474e4952;  // "RING"
constexpr uint32_t kRingVersion = 10;  // 10: 64-bit head words naming the claimer, a lost count; 2: indices 128 bytes apart; 3: each side's seen tail; 4: heads and tails on separate lines; 5: only producers keep a seen tail; 6: yield_when_idle, one claim in flight per side; 7: a claim stuck behind a stopped one is withdrawn; 8: each side's published tail also on its head's line; 9: only the producers' (single producers refresh it)
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

detail::RingCaller caller_of(const Runtime& rt) {
  const detail::ClaimOwners& owners = rt.claim_owners();
  return detail::RingCaller{owners.tag(), &owners};
}

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

namespace {

// How long a tail must stand still before a waiter asks whether the claims
// at it belong to a dead process, and how often it asks again. A live
// claimer preempted that long is common on a loaded machine; asking then is
// only a registry lookup (a few microseconds), never a wrong repair: claims
// are withdrawn only when their owner is known dead.
constexpr uint64_t kStillBeforeAskingNs = 1'000'000;
constexpr uint64_t kAskEveryNs = 1'000'000;

// What this thread last saw of a tail standing still, across calls and
// withdrawn claims, and the last head word it found to be a dead owner's.
struct Stall {
  const void* tail;
  uint32_t value;
  uint64_t since_ns;
  uint64_t asked_ns;
  uint64_t dead_word;  // valid while `tail` stays at `value`
};
thread_local Stall t_stall{};

bool time_to_ask(const std::atomic<uint32_t>& tail, uint32_t value) noexcept {
  const uint64_t now = os::monotonic_ns();
  Stall& s = t_stall;
  if (s.tail != &tail || s.value != value) {
    s = Stall{&tail, value, now, 0, 0};
    return false;
  }
  if (now - s.since_ns < kStillBeforeAskingNs || now - s.asked_ns < kAskEveryNs) return false;
  s.asked_ns = now;
  return true;
}

std::string ring_name(const RingHeader* h) { return std::string(h->name, strnlen(h->name, sizeof h->name)); }

// What lies between a side's tail `tail_now` and the head word `word` (the
// claims just below it, by one owner).
enum class Below {
  unknown,   // claims of others before that run, an unknown owner, or nothing
  live,      // the owner is alive (preempted): wait
  complete,  // single calls, copied and unpublished: publish them
  dead,      // all the claims of a dead process: withdraw them
};

Below what_is_below(const std::atomic<uint32_t>& tail, uint32_t tail_now, uint64_t word, const RingCaller& caller) noexcept {
  const uint32_t n = claim_index(word) - tail_now, owner = claim_owner(word);
  if (n == 0 || n > (1u << 30) || owner == kClaimUnknown) return Below::unknown;
  if (owner == kClaimSingle) return Below::complete;  // all between the tail and it (claim_word.hpp)
  if (n > claim_run(word)) return Below::unknown;
  Stall& s = t_stall;
  const bool known_dead = s.tail == &tail && s.value == tail_now && s.dead_word == word;
  if (!known_dead && !time_to_ask(tail, tail_now)) return Below::live;
  if (!known_dead && (!caller.owners || caller.owners->alive(owner))) return Below::live;
  s.dead_word = word;  // a dead owner stays dead: no need to ask again while this tail stands
  return Below::dead;
}

// The head word after withdrawing every claim above the tail `at`: no
// owner left to name (all below it is published).
uint64_t word_at(uint32_t at) noexcept { return uint64_t(kClaimUnknown) << 48 | uint64_t(at & 0xFFFF) << 32 | at; }

// Counts and logs what a withdrawal of dead claims [from, to) cost.
void withdrew_dead(RingHeader* h, bool producers, uint32_t from, uint32_t to, uint32_t owner, const RingCaller& caller) noexcept {
  if (producers) h->repairs.lost.fetch_add(to - from, std::memory_order_relaxed);
  MPOD_LOG(memzone, warning,
           "ring '%s': %s died inside a %s call; its claim of %u slot(s) [%u, %u) is withdrawn (%s), the others go on",
           ring_name(h).c_str(), caller.owners->describe(owner).c_str(), producers ? "producer" : "consumer", to - from,
           from, to, producers ? "its elements are lost, counted in lost_to_dead()" : "its elements stay in the ring");
}

// Publishes complete single calls' claims [tail_now, end): the value their
// caller would store (it may yet, if alive: the same value).
bool publish_complete(std::atomic<uint32_t>& tail, uint32_t tail_now, uint32_t end) noexcept {
  uint32_t expected = tail_now;
  tail.compare_exchange_strong(expected, end, std::memory_order_release);
  return true;  // moved, by us or by another
}

}  // namespace

bool ring_wait_turn(RingHeader* h, bool producers, uint64_t claim, uint64_t pred, RingCaller caller) noexcept {
  // While the tail moves, the claims ahead are being published by running
  // threads and ours comes soon: spin. When it stands still, the claim at
  // its front is probably held by a preempted thread, which may need a time
  // slice to publish. Waiting holding our claim would make every later
  // claimer wait for us in turn (8 threads on 2 CPUs then settle into a
  // round-robin of yields, docs/data-plane.md): withdraw it if no one has
  // claimed after us, and yield holding nothing. If it stands still for a
  // millisecond, the claims just before ours may be a dead process's: ask,
  // and if so withdraw them with ours (we are then the last claim).
  std::atomic<uint64_t>& head = producers ? h->prod_head : h->cons_head;
  std::atomic<uint32_t>& tail = producers ? h->prod_tail : h->cons_tail;
  const uint32_t start = claim_index(pred);
  uint32_t last = tail.load(std::memory_order_acquire), still = 0;
  while (last != start) {
    if (++still % kSpinsBeforeYield == 0) {
      const Below below = what_is_below(tail, last, pred, caller);
      if (below == Below::complete) {
        publish_complete(tail, last, start);
        last = tail.load(std::memory_order_acquire);
        continue;
      }
      // Back to the word our CAS replaced, whole: its owner and run hold
      // again. Or, below us a dead process's claims down to the tail: back
      // to the tail, withdrawing them too. Release: whoever claims these
      // slots next is ordered after our copy.
      uint64_t ours = claim;
      const bool dead = below == Below::dead;
      if (head.compare_exchange_strong(ours, dead ? word_at(last) : pred, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
        if (dead) {
          withdrew_dead(h, producers, last, start, claim_owner(pred), caller);
          return false;  // claim again at once, from the tail
        }
        ::sched_yield();
        return false;
      }
      ::sched_yield();
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

bool ring_wait_in_flight(RingHeader* h, bool producers, uint32_t tail_now, RingCaller caller) noexcept {
  // Usually a full (empty) ring is just that, or the other side's claimer
  // is running and publishes within nanoseconds: report at once. Reading
  // the other side's head on every such call would take its line away from
  // a claimer about to CAS it; only after kSpinsBeforeYield calls of this
  // thread that saw the same tail do we look whether a claim is in flight
  // (its owner is then probably preempted) and give it the CPU. A claim in
  // flight that holds the tail still for a millisecond may be a dead
  // process's, with no claimer of its side behind it to find out: ask.
  std::atomic<uint64_t>& head = producers ? h->cons_head : h->prod_head;
  std::atomic<uint32_t>& tail = producers ? h->cons_tail : h->prod_tail;
  auto& w = t_in_flight;
  if (w.tail != &tail || w.seen != tail_now) {
    w = InFlightWatch{&tail, tail_now, 0};
    return false;
  }
  if (++w.polls % kSpinsBeforeYield != 0) return false;
  uint64_t word = head.load(std::memory_order_acquire);
  if (claim_index(word) == tail_now) {  // nothing in flight: really full or empty
    // Idle this long: if the other side's threads are waiting for a CPU,
    // give them ours (a poller would otherwise keep it for its time slice).
    if (!h->yield_when_idle || w.polls < kIdlePollsBeforeYield) return false;
    w.polls = 0;
  } else {
    switch (what_is_below(tail, tail_now, word, caller)) {
      case Below::complete:
        return publish_complete(tail, tail_now, claim_index(word));
      case Below::dead:
        // Only if they are still the last claims: a claimer on top of them
        // withdraws them itself (ring_wait_turn).
        if (head.compare_exchange_strong(word, word_at(tail_now), std::memory_order_acq_rel, std::memory_order_relaxed)) {
          withdrew_dead(h, !producers, tail_now, claim_index(word), claim_owner(word), caller);
          return true;
        }
        break;
      case Below::live:
      case Below::unknown:
        break;
    }
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
  return Ring(h, detail::RingShape{size, size - 1, capacity, o.elem_size}, caller_of(rt));
}

Ring Ring::lookup(Runtime& rt, std::string_view name) {
  validate_ring_name(name);
  auto mz = rt.memzones().lookup(memzone_name(name));
  if (!mz)
    throw Error(Errc::not_found, "no ring named '" + std::string(name) + "' in " + rt.domain_dir() +
                                     "; create it first, or check the name and --file-prefix");
  auto* h = static_cast<Header*>(mz->addr);
  wait_initialised(*mz, &h->magic, kRingMagic, &h->version, kRingVersion, "ring", name);
  return Ring(h, checked_shape(h, mz->len, name), caller_of(rt));
}

std::vector<Ring> Ring::list(Runtime& rt) {
  std::vector<Ring> out;
  for (auto& z : rt.memzones().list()) {
    if (!z.name.starts_with(kPrefix) || z.len < kSlotsOffset) continue;
    auto* h = static_cast<Header*>(z.addr);
    if (std::atomic_ref<uint32_t>(h->magic).load(std::memory_order_acquire) != kRingMagic) continue;
    try {
      out.push_back(Ring(h, checked_shape(h, z.len, z.name), caller_of(rt)));
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
uint64_t Ring::lost_to_dead() const noexcept { return h_->repairs.lost.load(std::memory_order_relaxed); }
unsigned Ring::free_count() const noexcept { return shape_.capacity - count(); }
unsigned Ring::capacity() const noexcept { return shape_.capacity; }
uint32_t Ring::elem_size() const noexcept { return shape_.elem_size; }
bool Ring::yields_when_idle() const noexcept { return h_->yield_when_idle; }
std::string Ring::name() const { return std::string(h_->name, strnlen(h_->name, sizeof h_->name)); }

}  // namespace mpod
