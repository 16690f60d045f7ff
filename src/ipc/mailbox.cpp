#include "mailbox.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "mpod/error.hpp"

namespace mpod::mailbox {

// Memory orderings. Lane: the producer writes a slot's bytes, then stores
// tail with release; the consumer loads tail with acquire before reading the
// slot, and stores head with release after copying it out, which the
// producer's acquire load of head pairs with before it reuses the slot.
// Doorbell: the producer's store to tail and its load of `sleeping`, and the
// receiver's store to `sleeping` and its load of tail, are seq_cst, so at
// least one of them sees the other (no lost wake-up). Boxes: the replier
// claims a box by CAS (acquire), writes, and publishes with a release store
// of the ready state; the requester reads the data after an acquire load.

struct Mailbox::Header {
  uint32_t magic;
  uint32_t version;
  uint32_t lanes, slots, slot_size, boxes, box_size;
  uint32_t pad0;
  alignas(64) std::atomic<uint32_t> sleeping;
  char pad1[64 - sizeof(std::atomic<uint32_t>)];
};

struct Mailbox::Lane {
  alignas(64) std::atomic<uint64_t> owner;  // owner_tag of the sending process, 0 if free
  alignas(64) std::atomic<uint32_t> tail;   // written by the owner only
  alignas(64) std::atomic<uint32_t> head;   // written by the receiver only
  alignas(64) uint8_t slots[kSlots][kSlotSize];  // each: uint32 length, then bytes
};

struct Mailbox::Box {
  alignas(64) std::atomic<uint32_t> state;  // generation << 2 | BoxPhase (a futex word)
  uint32_t len;
  alignas(64) uint8_t data[kBoxData];
};

static_assert(sizeof(std::atomic<uint32_t>) == 4 && std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

namespace {
constexpr size_t kHeaderBytes = 4096;
size_t lanes_offset() { return kHeaderBytes; }
size_t lanes_bytes() { return size_t(kLanes) * (64 * 3 + size_t(kSlots) * kSlotSize); }
size_t boxes_offset() { return kHeaderBytes + lanes_bytes(); }
size_t total_size() { return boxes_offset() + size_t(kBoxes) * 1024; }
}  // namespace

uint64_t owner_tag(const ProcessId& id) noexcept {
  uint64_t t;
  std::memcpy(&t, id.bytes.data() + 8, 8);
  return t ? t : 1;
}

Mailbox::Mailbox(std::string path, void* base, size_t size) : path_(std::move(path)), base_(base), size_(size) {
  static_assert(sizeof(Header) <= kHeaderBytes);
  static_assert(sizeof(Lane) == 64 * 3 + size_t(kSlots) * kSlotSize);
  static_assert(sizeof(Box) == 1024);
}

Mailbox::~Mailbox() { os::unmap(base_, size_); }

Mailbox::Header* Mailbox::header() const noexcept { return static_cast<Header*>(base_); }
Mailbox::Lane* Mailbox::lane(int i) const noexcept {
  return reinterpret_cast<Lane*>(static_cast<uint8_t*>(base_) + lanes_offset()) + i;
}
Mailbox::Box* Mailbox::box(uint32_t i) const noexcept {
  return reinterpret_cast<Box*>(static_cast<uint8_t*>(base_) + boxes_offset()) + i;
}

MailboxPtr Mailbox::create(const os::Dir& dir, const std::string& name) {
  // A stale mailbox of this id cannot exist (ids are unique), but a file
  // left by a crashed process that reused nothing is replaced, never reused.
  dir.remove(name);
  const std::string path = dir.path_of(name);
  os::Fd fd = dir.create(name, O_RDWR, 0600, os::Share::none);
  const size_t size = total_size();
  os::truncate_file(fd.get(), size, path);  // sparse: pages appear as lanes are used
  void* base = os::map_shared(size, fd.get(), path);
  MailboxPtr m(new Mailbox(path, base, size));  // the mapping keeps the file: no descriptor held per mailbox
  Header* h = m->header();
  h->lanes = kLanes;
  h->slots = kSlots;
  h->slot_size = kSlotSize;
  h->boxes = kBoxes;
  h->box_size = sizeof(Box);
  h->version = kVersion;
  std::atomic_ref<uint32_t>(h->magic).store(kMagic, std::memory_order_release);  // last: the file is valid from here
  return m;
}

MailboxPtr Mailbox::open(const os::Dir& dir, const std::string& name) {
  const uid_t me = os::effective_uid();
  auto st = dir.stat(name);
  if (!st || st->st_uid != me) return nullptr;  // not there yet, or another uid's: the socket path serves
  os::Fd fd = dir.try_open(name, O_RDWR, me);
  if (!fd) return nullptr;
  const std::string path = dir.path_of(name);
  const size_t size = total_size();
  if (os::file_size(fd.get(), path) != size)
    throw Error(Errc::corrupt, "mailbox " + path + " has the wrong size; it was made by another mpod version or damaged. "
                               "Restart that process with the same mpod version");
  void* base = os::map_shared(size, fd.get(), path);
  MailboxPtr m(new Mailbox(path, base, size));  // the mapping keeps the file: no descriptor held per mailbox
  Header* h = m->header();
  if (std::atomic_ref<uint32_t>(h->magic).load(std::memory_order_acquire) != kMagic)
    return nullptr;  // its owner is still creating it
  if (h->version != kVersion || h->lanes != kLanes || h->slots != kSlots || h->slot_size != kSlotSize ||
      h->boxes != kBoxes || h->box_size != sizeof(Box))
    throw Error(Errc::corrupt, "mailbox " + path + " has another layout (version " + std::to_string(h->version) +
                                   "); all processes of a domain must run the same mpod version");
  return m;
}

uint64_t Mailbox::lane_owner(int i) const noexcept { return lane(i)->owner.load(std::memory_order_acquire); }

bool Mailbox::try_take(int i, uint64_t expected, uint64_t tag) noexcept {
  return lane(i)->owner.compare_exchange_strong(expected, tag, std::memory_order_acq_rel);
}

void Mailbox::release_lane(int i, const ProcessId& self) noexcept {
  uint64_t tag = owner_tag(self);
  lane(i)->owner.compare_exchange_strong(tag, 0, std::memory_order_acq_rel);
}

bool Mailbox::push(int i, std::span<const os::Part> parts) noexcept {
  Lane* l = lane(i);
  const uint32_t tail = l->tail.load(std::memory_order_relaxed);
  if (tail - l->head.load(std::memory_order_acquire) >= kSlots) return false;
  uint8_t* slot = l->slots[tail % kSlots];
  uint32_t len = 0;
  for (auto& p : parts) {
    if (p.len == 0) continue;  // an empty payload may come with a null pointer
    std::memcpy(slot + 8 + len, p.data, p.len);
    len += static_cast<uint32_t>(p.len);
  }
  std::memcpy(slot, &len, 4);
  l->tail.store(tail + 1, std::memory_order_seq_cst);
  return true;
}

bool Mailbox::has_room(int i) const noexcept {
  Lane* l = lane(i);
  return l->tail.load(std::memory_order_relaxed) - l->head.load(std::memory_order_acquire) < kSlots;
}

bool Mailbox::take_doorbell() noexcept {
  auto& s = header()->sleeping;
  return s.load(std::memory_order_seq_cst) != 0 && s.exchange(0, std::memory_order_seq_cst) != 0;
}

int Mailbox::pop(int i, uint8_t* out) noexcept {
  Lane* l = lane(i);
  const uint32_t head = l->head.load(std::memory_order_relaxed);
  if (head == l->tail.load(std::memory_order_acquire)) return -1;
  const uint8_t* slot = l->slots[head % kSlots];
  uint32_t len;
  std::memcpy(&len, slot, 4);
  if (len > kSlotData) len = kSlotData;  // a damaged length cannot make us read past the slot; decode refuses it
  std::memcpy(out, slot + 8, len);
  l->head.store(head + 1, std::memory_order_release);
  return int(len);
}

bool Mailbox::lane_has_data(int i) const noexcept {
  Lane* l = lane(i);
  return l->head.load(std::memory_order_relaxed) != l->tail.load(std::memory_order_seq_cst);
}

bool Mailbox::any_lane_has_data() const noexcept {
  for (uint32_t i = 0; i < kLanes; ++i)
    if (lane_has_data(int(i))) return true;
  return false;
}

bool Mailbox::prepare_to_sleep() noexcept {
  header()->sleeping.store(1, std::memory_order_seq_cst);
  if (!any_lane_has_data()) return true;
  header()->sleeping.store(0, std::memory_order_relaxed);
  return false;
}

void Mailbox::woke_up() noexcept { header()->sleeping.store(0, std::memory_order_relaxed); }

std::atomic<uint32_t>& Mailbox::box_state(uint32_t b) noexcept { return box(b)->state; }
uint8_t* Mailbox::box_data(uint32_t b) noexcept { return box(b)->data; }
uint32_t& Mailbox::box_len(uint32_t b) noexcept { return box(b)->len; }

bool Mailbox::fill_box(uint32_t b, uint32_t gen, std::span<const os::Part> parts) noexcept {
  if (b >= kBoxes) return false;
  size_t total = 0;
  for (auto& p : parts) total += p.len;
  if (total > kBoxData) return false;
  Box* x = box(b);
  uint32_t expected = (gen << 2) | box_waiting;
  if (!x->state.compare_exchange_strong(expected, (gen << 2) | box_writing, std::memory_order_acquire)) return false;
  size_t off = 0;
  for (auto& p : parts) {
    if (p.len == 0) continue;
    std::memcpy(x->data + off, p.data, p.len);
    off += p.len;
  }
  x->len = static_cast<uint32_t>(total);
  x->state.store((gen << 2) | box_ready, std::memory_order_release);
  os::futex_wake(&x->state);
  return true;
}

}  // namespace mpod::mailbox
