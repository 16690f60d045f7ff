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
//   Header   magic, version, geometry; `sleeping`, the doorbell flag
//   Lane[kLanes]   one single-producer ring per sending process:
//                  owner tag, tail (producer), head (consumer), kSlots slots
//   ReplyBox[kBoxes]  one per synchronous request in flight from this process:
//                  the replier writes the reply here and wakes the requester
//                  through a futex on the box's state word
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
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "../os/dir.hpp"
#include "../os/os.hpp"
#include "mpod/process.hpp"

namespace mpod::mailbox {

constexpr uint32_t kMagic = 0x58424d4d;  // "MMBX"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kLanes = 64;          // senders on the fast path at once
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

  // ---- sender side ----
  // Takes a lane for the sender `self`: a free one, one it already owns, or
  // one whose owner `is_dead` says is dead. -1 if all are held by live owners.
  template <class IsDead>
  int claim_lane(const ProcessId& self, IsDead&& is_dead);
  // Gives back a lane this sender owns (on clean exit).
  void release_lane(int lane, const ProcessId& self) noexcept;
  // Copies `parts` into the next slot of `lane` and publishes it. false if
  // the lane is full. Total length must be <= kSlotData. Only the lane's
  // owner may call it (its threads serialise among themselves).
  bool push(int lane, std::span<const os::Part> parts) noexcept;
  // Whether push() would find a free slot (stays true until the owner pushes).
  bool has_room(int lane) const noexcept;
  // Tells whether the receiver was asleep, clearing the flag: the caller that
  // gets true sends the doorbell datagram. Call after push().
  bool take_doorbell() noexcept;

  // ---- receiver side ----
  // Copies the oldest message of `lane` into `out` (at least kSlotData
  // bytes) and frees its slot. Returns its length, or -1 if the lane is empty.
  int pop(int lane, uint8_t* out) noexcept;
  bool lane_has_data(int lane) const noexcept;
  uint64_t lane_owner(int lane) const noexcept;
  bool any_lane_has_data() const noexcept;
  // Before blocking: raise the flag, then look again (the seq_cst pair with
  // take_doorbell means a message published meanwhile is seen by one side).
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
  struct Lane;
  struct Box;
  Mailbox(std::string path, void* base, size_t size);
  Header* header() const noexcept;
  Lane* lane(int i) const noexcept;
  Box* box(uint32_t i) const noexcept;
  bool try_take(int i, uint64_t expected, uint64_t tag) noexcept;

  std::string path_;
  void* base_;
  size_t size_;
};

template <class IsDead>
int Mailbox::claim_lane(const ProcessId& self, IsDead&& is_dead) {
  const uint64_t tag = owner_tag(self);
  for (uint32_t i = 0; i < kLanes; ++i)
    if (lane_owner(int(i)) == tag) return int(i);
  for (uint32_t i = 0; i < kLanes; ++i)
    if (lane_owner(int(i)) == 0 && try_take(int(i), 0, tag)) return int(i);
  for (uint32_t i = 0; i < kLanes; ++i) {
    const uint64_t owner = lane_owner(int(i));
    if (owner != 0 && owner != tag && is_dead(owner) && try_take(int(i), owner, tag)) return int(i);
  }
  return -1;
}

}  // namespace mpod::mailbox
