#include "mailbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod::mailbox {

// Memory orderings.
// Slots: the producer writes a slot's bytes before it stores tail; the
// receiver copies them out after it loads tail and before it stores head
// (release), which the producer loads (acquire) before it reuses the slot.
// Tail's store and the receiver's load of it are seq_cst, which includes
// release and acquire, for the pairs below.
// Ready bits and doorbell: every access to tail, the ready words and
// `sleeping` is seq_cst, because the protocol is two store-then-load pairs,
// and only seq_cst on all four accesses of a pair makes one side see the
// other's store:
//   1. Producer: store tail, then load its bit (setting it if clear).
//      Receiver: take a word (exchange it to 0), then load its lanes' tails.
//      A producer that finds its bit set skips setting it: if the receiver
//      took the word after that load, it loads the new tail and drains the
//      message; if not, the bit is still set for its next look. A bit set
//      after the receiver took the word waits for the next pass (spurious if
//      that pass emptied the lane already: harmless).
//   2. Producer: its bit is set (by it or before), then load `sleeping`
//      (take_doorbell). Receiver: store `sleeping`, then load the words
//      (prepare_to_sleep). Either the receiver sees the bit and stays up, or
//      the producer sees the flag and rings.
// The receiver's re-flagging of a lane it left non-empty is for its own next
// pass (a live sender's pushes after the receiver took the word have flagged
// the lane already; this covers a flag that was lost); it is seq_cst like
// every access to the words, so the pairs above hold whoever set a bit.
// Boxes: the replier claims a box by CAS (acquire), writes, and publishes with
// a release store of the ready state; the requester reads the data after an
// acquire load.

struct Mailbox::Header {
  uint32_t magic;
  uint32_t version;
  uint32_t lanes, slots, slot_size, boxes, box_size;
  uint32_t pad0;
  alignas(64) std::atomic<uint32_t> sleeping;
  // One cache line per word: senders flagging lanes of different words do
  // not contend, and the receiver's 16 loads hit lines that change only when
  // a lane goes from idle to busy.
  struct alignas(64) ReadyWord {
    std::atomic<uint64_t> bits;
  } ready[kReadyWords];
};

struct Mailbox::Ends {
  alignas(64) std::atomic<uint32_t> tail;  // written by the owner only
  alignas(64) std::atomic<uint32_t> head;  // written by the receiver only
};

struct Mailbox::Box {
  alignas(64) std::atomic<uint32_t> state;  // generation << 2 | BoxPhase (a futex word)
  uint32_t len;
  alignas(64) uint8_t data[kBoxData];
};

static_assert(sizeof(std::atomic<uint32_t>) == 4 && std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

static_assert(kLanes % 64 == 0 && kReadyWords * 64 == kLanes, "every bit of the ready words names a lane");

namespace {
constexpr size_t kPage = 4096;
constexpr size_t kHeaderBytes = kPage;
constexpr size_t kOwnersOffset = kHeaderBytes;  // uint64 owner_tag per lane, 0 if free
constexpr size_t kEndsOffset = kOwnersOffset + size_t(kLanes) * 8;
constexpr size_t kLaneSlotsBytes = size_t(kSlots) * kSlotSize;  // each slot: uint32 length, then bytes
constexpr size_t kSlotsOffset = kEndsOffset + size_t(kLanes) * 128;
constexpr size_t kBoxesOffset = kSlotsOffset + size_t(kLanes) * kLaneSlotsBytes;
constexpr size_t kTotalSize = kBoxesOffset + size_t(kBoxes) * 1024;
static_assert(kSlotsOffset % kPage == 0 && kLaneSlotsBytes % kPage == 0, "a lane's slots share no page with another's");
}  // namespace

uint64_t owner_tag(const ProcessId& id) noexcept {
  uint64_t t;
  std::memcpy(&t, id.bytes.data() + 8, 8);
  return t ? t : 1;
}

Mailbox::Mailbox(const os::Dir& dir, std::string name, int fd, void* base, size_t size)
    : dir_(dir), name_(std::move(name)), path_(dir.path_of(name_)), base_(base), size_(size) {
  struct stat st {};
  if (::fstat(fd, &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  static_assert(sizeof(Header) <= kHeaderBytes);
  static_assert(sizeof(Ends) == 128);
  static_assert(sizeof(Box) == 1024);
}

Mailbox::~Mailbox() { os::unmap(base_, size_); }

Mailbox::Header* Mailbox::header() const noexcept { return static_cast<Header*>(base_); }
std::atomic<uint64_t>& Mailbox::owner(int i) const noexcept {
  return reinterpret_cast<std::atomic<uint64_t>*>(static_cast<uint8_t*>(base_) + kOwnersOffset)[i];
}
Mailbox::Ends* Mailbox::ends(int i) const noexcept {
  return reinterpret_cast<Ends*>(static_cast<uint8_t*>(base_) + kEndsOffset) + i;
}
uint8_t* Mailbox::slot(int i, uint32_t n) const noexcept {
  return static_cast<uint8_t*>(base_) + kSlotsOffset + size_t(i) * kLaneSlotsBytes + size_t(n % kSlots) * kSlotSize;
}
Mailbox::Box* Mailbox::box(uint32_t i) const noexcept {
  return reinterpret_cast<Box*>(static_cast<uint8_t*>(base_) + kBoxesOffset) + i;
}

MailboxPtr Mailbox::create(const os::Dir& dir, const std::string& name) {
  // A stale mailbox of this id cannot exist (ids are unique), but a file
  // left by a crashed process that reused nothing is replaced, never reused.
  dir.remove(name);
  const std::string path = dir.path_of(name);
  os::Fd fd = dir.create(name, O_RDWR, 0600, os::Share::none);
  const size_t size = kTotalSize;
  os::truncate_file(fd.get(), size, path);  // sparse: a lane's pages are backed when a sender claims it (back_lane)
  // Everything but the lanes is backed now: on a filesystem that fills up
  // later, a hole touched by the receiver or a sender would be a SIGBUS.
  os::allocate_file(fd.get(), 0, kSlotsOffset, path);
  os::allocate_file(fd.get(), kBoxesOffset, size - kBoxesOffset, path);
  void* base = os::map_shared(size, fd.get(), path);
  // Each process touches a few scattered pages of it: a readahead window on
  // the first fault would zero-fill megabytes of a sparse file (most of an
  // attach's CPU at 1024 processes).
  os::advise_random(base, size);
  MailboxPtr m(new Mailbox(dir, name, fd.get(), base, size));  // the mapping keeps the file: no descriptor held per mailbox
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
  const size_t size = kTotalSize;
  if (os::file_size(fd.get(), path) != size)
    throw Error(Errc::corrupt, "mailbox " + path + " has the wrong size; it was made by another mpod version or damaged. "
                               "Restart that process with the same mpod version");
  void* base = os::map_shared(size, fd.get(), path);
  // Each process touches a few scattered pages of it: a readahead window on
  // the first fault would zero-fill megabytes of a sparse file (most of an
  // attach's CPU at 1024 processes).
  os::advise_random(base, size);
  MailboxPtr m(new Mailbox(dir, name, fd.get(), base, size));  // the mapping keeps the file: no descriptor held per mailbox
  Header* h = m->header();
  if (std::atomic_ref<uint32_t>(h->magic).load(std::memory_order_acquire) != kMagic)
    return nullptr;  // its owner is still creating it
  if (h->version != kVersion || h->lanes != kLanes || h->slots != kSlots || h->slot_size != kSlotSize ||
      h->boxes != kBoxes || h->box_size != sizeof(Box))
    throw Error(Errc::corrupt, "mailbox " + path + " has another layout (version " + std::to_string(h->version) +
                                   "); all processes of a domain must run the same mpod version");
  return m;
}

size_t Mailbox::backed_at_create() noexcept { return kSlotsOffset + (kTotalSize - kBoxesOffset); }

bool Mailbox::back_lane(int lane) noexcept {
  try {
    os::Fd fd = dir_.try_open(name_, O_RDWR, os::effective_uid());
    struct stat st {};
    // The file mapped, not whatever has its name now.
    if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) return false;
    os::allocate_file(fd.get(), kSlotsOffset + size_t(lane) * kLaneSlotsBytes, kLaneSlotsBytes, path_);
    return true;
  } catch (const Error& e) {
    MPOD_LOG(ipc, info, "cannot back lane %d of %s: %s", lane, path_.c_str(), e.what());
    return false;
  }
}

uint64_t Mailbox::lane_owner(int i) const noexcept { return owner(i).load(std::memory_order_acquire); }

bool Mailbox::try_take(int i, uint64_t expected, uint64_t tag) noexcept {
  return owner(i).compare_exchange_strong(expected, tag, std::memory_order_acq_rel);
}

void Mailbox::release_lane(int i, const ProcessId& self) noexcept {
  uint64_t tag = owner_tag(self);
  owner(i).compare_exchange_strong(tag, 0, std::memory_order_acq_rel);
}

bool Mailbox::push(int i, std::span<const os::Part> parts) noexcept {
  Ends* e = ends(i);
  const uint32_t tail = e->tail.load(std::memory_order_relaxed);
  if (tail - e->head.load(std::memory_order_acquire) >= kSlots) return false;
  uint8_t* s = slot(i, tail);
  uint32_t len = 0;
  for (auto& p : parts) {
    if (p.len == 0) continue;  // an empty payload may come with a null pointer
    std::memcpy(s + 8 + len, p.data, p.len);
    len += static_cast<uint32_t>(p.len);
  }
  std::memcpy(s, &len, 4);
  e->tail.store(tail + 1, std::memory_order_seq_cst);
  // Read before writing: while the receiver has not taken the word, a busy
  // lane's bit stays set and its sender does no locked operation on a line
  // other senders write too.
  auto& word = header()->ready[uint32_t(i) / 64].bits;
  const uint64_t bit = uint64_t(1) << (uint32_t(i) % 64);
  if ((word.load(std::memory_order_seq_cst) & bit) == 0) word.fetch_or(bit, std::memory_order_seq_cst);
  return true;
}

bool Mailbox::has_room(int i) const noexcept {
  Ends* e = ends(i);
  return e->tail.load(std::memory_order_relaxed) - e->head.load(std::memory_order_acquire) < kSlots;
}

bool Mailbox::take_doorbell() noexcept {
  auto& s = header()->sleeping;
  return s.load(std::memory_order_seq_cst) != 0 && s.exchange(0, std::memory_order_seq_cst) != 0;
}

int Mailbox::pop(int i, uint8_t* out) noexcept {
  Ends* e = ends(i);
  const uint32_t head = e->head.load(std::memory_order_relaxed);
  if (head == e->tail.load(std::memory_order_seq_cst)) return -1;  // seq_cst: the load after take_ready's exchange
  const uint8_t* s = slot(i, head);
  uint32_t len;
  std::memcpy(&len, s, 4);
  if (len > kSlotData) len = kSlotData;  // a damaged length cannot make us read past the slot; decode refuses it
  std::memcpy(out, s + 8, len);
  e->head.store(head + 1, std::memory_order_release);
  return int(len);
}

bool Mailbox::lane_has_data(int i) const noexcept {
  Ends* e = ends(i);
  return e->head.load(std::memory_order_relaxed) != e->tail.load(std::memory_order_seq_cst);
}

uint64_t Mailbox::take_ready(uint32_t w) noexcept {
  auto& word = header()->ready[w].bits;
  // Load first: an idle word costs no write, so its line stays shared with the senders.
  return word.load(std::memory_order_seq_cst) == 0 ? 0 : word.exchange(0, std::memory_order_seq_cst);
}

void Mailbox::set_ready(uint32_t w, uint64_t bits) noexcept {
  if (bits != 0) header()->ready[w].bits.fetch_or(bits, std::memory_order_seq_cst);
}

bool Mailbox::any_lane_has_data() const noexcept {
  for (const auto& word : header()->ready)
    if (word.bits.load(std::memory_order_seq_cst) != 0) return true;
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
