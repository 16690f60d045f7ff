// Mailbox: a process's shared-memory inbox, the channel's fast path.
//
// Every process creates <domain>/mp/<id>.mbox (same permissions as its
// socket) before binding its socket. Senders map it and write small messages
// straight into it, so a request costs no system call at all when the
// receiver is awake, and one doorbell datagram when it sleeps. The socket
// remains the path for descriptors, payloads too large for a slot, and
// senders that cannot open the mailbox.
//
// Layout (one file, sizes fixed by kGeometry and checked on open):
//   Header   magic, version, geometry; `sleeping`, the doorbell flag; the
//            ready bitmap, one bit per lane, each 64-bit word on its own
//            cache line: set by a sender after it publishes, taken (cleared)
//            by the receiver, so the receiver looks at 16 words, not 1024 lanes
//   Owner[kLanes]  owner tag per lane, one dense table: claiming a lane reads
//                  these 8 KiB and no lane
//   Ends[kLanes]   per lane its tail (producer) and head (consumer), each on
//                  its own cache line: 32 lanes to a page
//   Slots[kLanes]  per lane kSlots slots, a lane's own two pages
//   ReplyBox[kBoxes]  one per synchronous request in flight from this process:
//                  the replier writes the reply here and wakes the requester
//                  through a futex on the box's state word
//
// The file is sparse and its pages appear only where someone touches them
// (on tmpfs a read of a hole allocates a page too), so nothing scans lanes:
// a lane nobody claimed costs no memory, one that carries messages costs its
// two slot pages and a share of one Ends page.
//
// Why lanes, not one multi-producer ring: a sender that dies half-way through
// a write must not block anybody. A lane has one producer, which publishes a
// slot only by advancing its tail after the bytes are written, so a crash
// leaves nothing half-visible; the lane of a dead owner is taken over by the
// next sender that needs one. Messages of one sender to one receiver travel
// in one lane, in order; what must go by socket (descriptors, large payloads)
// leaves a marker in the lane so order is still kept (see ChannelImpl).
//
// Nothing read from a mailbox is trusted: slot lengths are bounded, bytes
// are copied out before they are decoded. A mailbox is its owner's uid's
// alone (mode 0600, even with --group): processes of other uids talk to it
// by socket, so a group member can neither forge a lane's owner nor a reply.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "../os/dir.hpp"
#include "../os/os.hpp"
#include "mpod/process.hpp"

namespace mpod::mailbox {

constexpr uint32_t kMagic = 0x58424d4d;  // "MMBX"
constexpr uint32_t kVersion = 2;
constexpr uint32_t kLanes = kMaxProcesses - 1;  // senders on the fast path at once: every other process of a full domain
constexpr uint32_t kReadyWords = kLanes / 64;  // words of the ready bitmap
constexpr uint32_t kSlots = 8;           // per lane
constexpr uint32_t kSlotSize = 1024;     // bytes per slot, with its length word
constexpr uint32_t kSlotData = kSlotSize - 8;
constexpr uint32_t kBoxes = 64;          // synchronous requests in flight per process
constexpr uint32_t kBoxData = 1024 - 64;

// The tag of a lane's owner: the low 64 bits of its process id (never 0).
uint64_t owner_tag(const ProcessId& id) noexcept;

// Reply box states, in the low 2 bits of the state word; the high 30 bits are
// the generation of the request the box serves.
enum BoxPhase : uint32_t { box_waiting = 0, box_writing = 1, box_ready = 2, box_done = 3 };

class Mailbox;
using MailboxPtr = std::shared_ptr<Mailbox>;

class Mailbox {
 public:
  // Creates this process's mailbox `name` in `dir`, owner-only whatever
  // --group says: its lanes are trusted to carry what their owners wrote, so
  // only processes of this uid (and root) may write them. Throws naming the file.
  static MailboxPtr create(const os::Dir& dir, const std::string& name);
  // Maps a peer's mailbox. nullptr if it does not exist (yet) or belongs to
  // another uid (that peer is reached by socket, where the kernel vouches
  // for the sender); throws if it exists but is damaged or planted.
  static MailboxPtr open(const os::Dir& dir, const std::string& name);
  ~Mailbox();
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  const std::string& path() const noexcept { return path_; }
  // Bytes create() backs: everything but the lanes' slots (the header, the
  // owner and ends tables, the reply boxes).
  static size_t backed_at_create() noexcept;

  // ---- sender side ----
  // Takes a lane for the sender `self`: one it already owns, else a free one,
  // else one whose owner `is_dead` says is dead. -1 if all are held by live
  // owners. Once per link to a peer: it reads the whole owner table.
  template <class IsDead>
  int claim_lane(const ProcessId& self, IsDead&& is_dead);
  // Gives back a lane this sender owns (on clean exit).
  void release_lane(int lane, const ProcessId& self) noexcept;
  // Gives `lane`'s slots storage in the file (they are holes until then).
  // false if the filesystem has no room (or the file is not the one mapped
  // any more): then the lane must not be used, since writing a hole on a
  // full filesystem is a SIGBUS. Call after claiming a lane.
  bool back_lane(int lane) noexcept;
  // Copies `parts` into the next slot of `lane`, publishes it and flags the
  // lane in the ready bitmap. false if the lane is full. Total length must be
  // <= kSlotData. Only the lane's owner may call it (its threads serialise
  // among themselves).
  bool push(int lane, std::span<const os::Part> parts) noexcept;
  // Whether push() would find a free slot (stays true until the owner pushes).
  bool has_room(int lane) const noexcept;
  // Tells whether the receiver was asleep, clearing the flag: the caller that
  // gets true sends the doorbell datagram. Call after push().
  bool take_doorbell() noexcept;

  // ---- receiver side ----
  // Hands `handle(lane, bytes)` the messages of the lanes flagged ready, at
  // most one lap (kSlots) per lane per call, so a busy sender cannot starve
  // the others; a lane it leaves non-empty stays flagged for the next call.
  // `cursor` is the receiver's (start at 0; each call advances it): it
  // rotates which word is served first, and names one lane per call that is
  // looked at whatever its flag says, so a message whose flag was lost (its
  // sender died between publishing and flagging) is found within kLanes
  // calls. `buf` holds kSlotData bytes; `bytes` points into it and is valid
  // during `handle` only. If `handle` throws, the lanes not yet drained stay
  // flagged. Returns how many messages it handed over.
  template <class Handle>
  size_t drain(uint32_t& cursor, uint8_t* buf, Handle&& handle);
  // Copies the oldest message of `lane` into `out` (at least kSlotData
  // bytes) and frees its slot. Returns its length, or -1 if the lane is empty.
  int pop(int lane, uint8_t* out) noexcept;
  bool lane_has_data(int lane) const noexcept;
  uint64_t lane_owner(int lane) const noexcept;
  // Whether some lane is flagged ready (it may have been drained since).
  bool any_lane_has_data() const noexcept;
  // Before blocking: raise the flag, then look at the ready bitmap (the
  // seq_cst pair with push and take_doorbell means a message published
  // meanwhile is seen by one side).
  // Returns false, with the flag lowered, if something is there.
  bool prepare_to_sleep() noexcept;
  void woke_up() noexcept;

  // ---- reply boxes ----
  std::atomic<uint32_t>& box_state(uint32_t box) noexcept;
  uint8_t* box_data(uint32_t box) noexcept;
  uint32_t& box_len(uint32_t box) noexcept;
  // Replier: writes `parts` into `box` if it still waits for generation
  // `gen`, then marks it ready and wakes the requester. false if the box
  // moved on (the request timed out) or the reply does not fit.
  bool fill_box(uint32_t box, uint32_t gen, std::span<const os::Part> parts) noexcept;

 private:
  struct Header;
  struct Ends;
  struct Box;
  Mailbox(const os::Dir& dir, std::string name, int fd, void* base, size_t size);
  Header* header() const noexcept;
  std::atomic<uint64_t>& owner(int lane) const noexcept;
  Ends* ends(int lane) const noexcept;
  uint8_t* slot(int lane, uint32_t n) const noexcept;
  Box* box(uint32_t i) const noexcept;
  bool try_take(int i, uint64_t expected, uint64_t tag) noexcept;
  // Receiver: clears word `w` (< kReadyWords) of the ready bitmap and returns
  // what it held; bit b stands for lane 64 * w + b.
  uint64_t take_ready(uint32_t w) noexcept;
  // Receiver: flags again lanes of word `w` it has not emptied.
  void set_ready(uint32_t w, uint64_t bits) noexcept;

  os::Dir dir_;  // where it is, and its name: to back a lane (back_lane)
  std::string name_;
  std::string path_;
  dev_t dev_ = 0;  // the file mapped
  ino_t ino_ = 0;
  void* base_;
  size_t size_;
};

template <class IsDead>
int Mailbox::claim_lane(const ProcessId& self, IsDead&& is_dead) {
  const uint64_t tag = owner_tag(self);
  uint32_t first_free = kLanes;
  for (uint32_t i = 0; i < kLanes; ++i) {
    const uint64_t owner = lane_owner(int(i));
    if (owner == tag) return int(i);
    if (owner == 0 && first_free == kLanes) first_free = i;
  }
  for (uint32_t i = first_free; i < kLanes; ++i)  // a race may take a free lane from under us: try the next
    if (lane_owner(int(i)) == 0 && try_take(int(i), 0, tag)) return int(i);
  // No lane free: is_dead, which may cost a look at the registry, is asked only now.
  for (uint32_t i = 0; i < kLanes; ++i) {
    const uint64_t owner = lane_owner(int(i));
    if (owner != 0 && owner != tag && is_dead(owner) && try_take(int(i), owner, tag)) return int(i);
  }
  return -1;
}

template <class Handle>
size_t Mailbox::drain(uint32_t& cursor, uint8_t* buf, Handle&& handle) {
  const uint32_t look = cursor % kLanes;
  cursor = (look + 1) % kLanes;
  size_t n = 0;
  for (uint32_t k = 0; k < kReadyWords; ++k) {
    const uint32_t w = (look + k) % kReadyWords;
    // Any sender may write the bits: they are hints, and 64 * w + b < kLanes whatever they say.
    uint64_t bits = take_ready(w);
    if (w == look / 64 && lane_owner(int(look)) != 0)  // an unowned lane may be a hole in the file: not read
      bits |= uint64_t(1) << (look % 64);
    try {
      for (; bits != 0; bits &= bits - 1) {
        const int lane = int(w * 64 + uint32_t(std::countr_zero(bits)));
        uint32_t i = 0;
        for (; i < kSlots; ++i) {
          const int len = pop(lane, buf);
          if (len < 0) break;
          ++n;
          handle(lane, std::span<const uint8_t>(buf, size_t(len)));
        }
        if (i == kSlots && lane_has_data(lane)) set_ready(w, bits & (~bits + 1));  // its lowest bit: this lane
      }
    } catch (...) {
      set_ready(w, bits);  // this lane and the word's lanes after it
      throw;
    }
  }
  return n;
}

}  // namespace mpod::mailbox
