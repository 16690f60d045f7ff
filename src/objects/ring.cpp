// Ring: DPDK-style head/tail lock-free FIFO in a memzone.
//
// Each side (producers, consumers) has a head, which claims slots, and a
// tail, which publishes them. Indices run free as uint32 and wrap; a slot is
// index & mask. Producers may fill up to `capacity` slots past the consumers'
// tail; consumers may take up to the producers' tail.
//
// Memory orderings:
//  - A producer loads cons_tail with acquire before claiming: the consumers'
//    reads of those slots happened before it overwrites them. A consumer
//    loads prod_tail with acquire before claiming: the producers' writes of
//    those slots are visible to its reads.
//  - Claiming (head CAS, or a plain store for a single producer/consumer)
//    only arbitrates among threads of one side. But reading the head (first,
//    and on a failed CAS) is acquire, so it is ordered before the read of
//    the other side's tail (DPDK uses a fence there); the CAS's success
//    order is acquire too, as GCC wants it no weaker than the failure order.
//  - Publishing stores the tail with release after the slots are copied.
//    With several producers (consumers), each first waits, with acquire
//    loads, until the tail reaches its own claim's start: so it publishes
//    after every earlier claim, and by transitivity its release covers their
//    copies too.
#include "mpod/ring.hpp"

#include <bit>
#include <cstring>
#include <new>

#include "../os/os.hpp"
#include "object_header.hpp"
#include "mpod/error.hpp"
#include "mpod/memzone.hpp"
#include "mpod/runtime.hpp"

namespace mpod {

namespace {
constexpr uint32_t kRingMagic = 0x474e4952;  // "RING"
constexpr uint32_t kRingVersion = 2;  // 2: indices 128 bytes apart
constexpr const char* kPrefix = "RG_";
}  // namespace

struct Ring::Header {
  uint32_t magic;  // written last (release): the ring is usable from then on
  uint32_t version;
  uint32_t capacity;
  uint32_t size;  // slots: a power of two >= capacity
  uint32_t mask;
  uint32_t elem_size;
  Sync producers;
  Sync consumers;
  char name[kMaxNameLen + 1];
  // Each side's indices on a line of their own, with an empty line before,
  // between and after, so the adjacent-line prefetcher does not drag the
  // other side's line (or the first slots) into a fight between cores.
  alignas(128) std::atomic<uint32_t> prod_head;
  std::atomic<uint32_t> prod_tail;
  alignas(128) std::atomic<uint32_t> cons_head;
  std::atomic<uint32_t> cons_tail;
  alignas(128) unsigned char pad[1];

  unsigned char* slots() noexcept { return reinterpret_cast<unsigned char*>(this) + offsetof(Header, pad); }
};

namespace {

using Header = Ring::Header;
constexpr size_t kSlotsOffset = offsetof(Header, pad);

std::string memzone_name(std::string_view name) { return kPrefix + std::string(name); }

void validate_ring_name(std::string_view name) {
  if (name.empty() || name.size() > Ring::kMaxNameLen)
    throw Error(Errc::invalid_argument, "ring name '" + std::string(name) + "' must be 1 to " +
                                            std::to_string(Ring::kMaxNameLen) + " characters");
  Memzones::validate_name(memzone_name(name));
}

enum class Amount { all, most };  // bulk, burst

// Copies n elements into the ring starting at index `at`, wrapping around.
void copy_in(Header* h, uint32_t at, const void* src, unsigned n) {
  const uint32_t esz = h->elem_size, idx = at & h->mask;
  unsigned char* slots = h->slots();
  if (esz == 8 && idx + n <= h->size) {  // the common case: pointers, no wrap
    auto* d = reinterpret_cast<uint64_t*>(slots) + idx;
    auto* s = static_cast<const uint64_t*>(src);
    for (unsigned i = 0; i < n; ++i) d[i] = s[i];
    return;
  }
  const unsigned first = std::min<unsigned>(n, h->size - idx);
  std::memcpy(slots + size_t(idx) * esz, src, size_t(first) * esz);
  if (n > first) std::memcpy(slots, static_cast<const unsigned char*>(src) + size_t(first) * esz, size_t(n - first) * esz);
}

void copy_out(Header* h, uint32_t at, void* dst, unsigned n) {
  const uint32_t esz = h->elem_size, idx = at & h->mask;
  const unsigned char* slots = h->slots();
  if (esz == 8 && idx + n <= h->size) {
    auto* s = reinterpret_cast<const uint64_t*>(slots) + idx;
    auto* d = static_cast<uint64_t*>(dst);
    for (unsigned i = 0; i < n; ++i) d[i] = s[i];
    return;
  }
  const unsigned first = std::min<unsigned>(n, h->size - idx);
  std::memcpy(dst, slots + size_t(idx) * esz, size_t(first) * esz);
  if (n > first) std::memcpy(static_cast<unsigned char*>(dst) + size_t(first) * esz, slots, size_t(n - first) * esz);
}

// Claims up to n slots on one side. `room` gives how many are available
// given this side's head. Returns the number claimed (0 if none).
template <class Room>
unsigned claim(std::atomic<uint32_t>& head, bool single, unsigned n, Amount amount, Room&& room, uint32_t* start,
               unsigned* left) {
  // Acquire: our head must be read before the other side's tail inside
  // room(); with a relaxed load a weakly ordered CPU could pair a newer head
  // with an older tail and see a huge, wrapped room.
  uint32_t old = head.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t avail = room(old);
    unsigned k = n <= avail ? n : amount == Amount::all ? 0 : avail;
    if (left) *left = avail - k;
    if (k == 0) return 0;
    if (single) {
      head.store(old + k, std::memory_order_relaxed);
      *start = old;
      return k;
    }
    if (head.compare_exchange_weak(old, old + k, std::memory_order_acquire, std::memory_order_acquire)) {
      *start = old;
      return k;
    }
  }
}

// Publishes [start, start+k) once every earlier claim of this side is published.
void publish(std::atomic<uint32_t>& tail, bool single, uint32_t start, unsigned k) {
  if (!single)
    for (uint32_t step = 0; tail.load(std::memory_order_acquire) != start; ++step) os::spin_pause(step);
  tail.store(start + k, std::memory_order_release);
}

bool is_single(Sync call, Sync ring) { return (call == Sync::by_ring ? ring : call) == Sync::single; }

unsigned do_enqueue(Header* h, const void* objs, unsigned n, Sync sync, Amount amount, unsigned* free_left) {
  const bool single = is_single(sync, h->producers);
  uint32_t start;
  const uint32_t cap = h->capacity;
  auto room = [h, cap](uint32_t head) { return cap + h->cons_tail.load(std::memory_order_acquire) - head; };
  unsigned k = claim(h->prod_head, single, n, amount, room, &start, free_left);
  if (k == 0) return 0;
  copy_in(h, start, objs, k);
  publish(h->prod_tail, single, start, k);
  return k;
}

unsigned do_dequeue(Header* h, void* objs, unsigned n, Sync sync, Amount amount, unsigned* available_left) {
  const bool single = is_single(sync, h->consumers);
  uint32_t start;
  auto room = [h](uint32_t head) { return h->prod_tail.load(std::memory_order_acquire) - head; };
  unsigned k = claim(h->cons_head, single, n, amount, room, &start, available_left);
  if (k == 0) return 0;
  copy_out(h, start, objs, k);
  publish(h->cons_tail, single, start, k);
  return k;
}

}  // namespace

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
  std::memcpy(h->name, name.data(), name.size());
  std::atomic_ref<uint32_t>(h->magic).store(kRingMagic, std::memory_order_release);
  return Ring(h);
}

Ring Ring::lookup(Runtime& rt, std::string_view name) {
  validate_ring_name(name);
  auto mz = rt.memzones().lookup(memzone_name(name));
  if (!mz)
    throw Error(Errc::not_found, "no ring named '" + std::string(name) + "' in " + rt.domain_dir() +
                                     "; create it first, or check the name and --file-prefix");
  auto* h = static_cast<Header*>(mz->addr);
  wait_initialised(*mz, &h->magic, kRingMagic, &h->version, kRingVersion, "ring", name);
  return Ring(h);
}

std::vector<Ring> Ring::list(Runtime& rt) {
  std::vector<Ring> out;
  for (auto& z : rt.memzones().list()) {
    if (!z.name.starts_with(kPrefix) || z.len < kSlotsOffset) continue;
    auto* h = static_cast<Header*>(z.addr);
    if (std::atomic_ref<uint32_t>(h->magic).load(std::memory_order_acquire) == kRingMagic) out.push_back(Ring(h));
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

unsigned Ring::enqueue_bulk(void* const* objs, unsigned n, Sync sync, unsigned* free_left) noexcept {
  return do_enqueue(h_, objs, n, sync, Amount::all, free_left);
}
unsigned Ring::enqueue_burst(void* const* objs, unsigned n, Sync sync, unsigned* free_left) noexcept {
  return do_enqueue(h_, objs, n, sync, Amount::most, free_left);
}
unsigned Ring::dequeue_bulk(void** objs, unsigned n, Sync sync, unsigned* available_left) noexcept {
  return do_dequeue(h_, objs, n, sync, Amount::all, available_left);
}
unsigned Ring::dequeue_burst(void** objs, unsigned n, Sync sync, unsigned* available_left) noexcept {
  return do_dequeue(h_, objs, n, sync, Amount::most, available_left);
}
unsigned Ring::enqueue_bulk_elem(const void* objs, unsigned n, Sync sync, unsigned* free_left) noexcept {
  return do_enqueue(h_, objs, n, sync, Amount::all, free_left);
}
unsigned Ring::enqueue_burst_elem(const void* objs, unsigned n, Sync sync, unsigned* free_left) noexcept {
  return do_enqueue(h_, objs, n, sync, Amount::most, free_left);
}
unsigned Ring::dequeue_bulk_elem(void* objs, unsigned n, Sync sync, unsigned* available_left) noexcept {
  return do_dequeue(h_, objs, n, sync, Amount::all, available_left);
}
unsigned Ring::dequeue_burst_elem(void* objs, unsigned n, Sync sync, unsigned* available_left) noexcept {
  return do_dequeue(h_, objs, n, sync, Amount::most, available_left);
}

unsigned Ring::count() const noexcept {
  // Consumers' tail first: the producers' tail read after it is never behind it.
  const uint32_t cons = h_->cons_tail.load(std::memory_order_acquire);
  const uint32_t prod = h_->prod_tail.load(std::memory_order_acquire);
  const uint32_t n = prod - cons;
  return n > h_->capacity ? h_->capacity : n;  // the two loads are not one snapshot
}
unsigned Ring::free_count() const noexcept { return h_->capacity - count(); }
unsigned Ring::capacity() const noexcept { return h_->capacity; }
uint32_t Ring::elem_size() const noexcept { return h_->elem_size; }
std::string Ring::name() const { return h_->name; }

}  // namespace mpod
