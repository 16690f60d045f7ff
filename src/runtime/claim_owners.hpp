// Claim owners: a 16-bit tag for every attached process, so that a ring's
// head word can say whose claim lies below it (include/mpod/detail/
// ring_ops.hpp, "Claims of dead processes") in the same CAS that makes the
// claim. A waiter that finds the claim ahead of it stuck asks whether its
// owner is alive, and repairs the ring if not.
//
// The table lives in the shared config, one slot per process of a full
// domain. A process takes a slot when it starts (round robin from a shared
// cursor, so a slot is reused as late as possible) and gives it back when
// it shuts down; a reaper gives back the slots of the dead it reaps. A tag
// is the slot's number and the low 5 bits of the generation the slot had
// when its owner took it: a tag of a process whose slot was given back, or
// taken again since, is dead without asking the registry. A tag is taken for
// a live process only when the slot's generation matches and the registry
// says its owner's registration lock is held.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "mpod/detail/claim_word.hpp"
#include "mpod/process.hpp"

namespace mpod {

struct ClaimOwnerSlot {
  // Bits 0-1: kFree, kTaking or kOwned; bits 2-31: the generation, bumped
  // by every take.
  std::atomic<uint32_t> state;
  uint32_t reserved;
  uint8_t id[16];  // the owner's ProcessId: written while taking, unchanged while owned
  uint64_t reserved2;
};
static_assert(sizeof(ClaimOwnerSlot) == 32);

struct ClaimOwnerTable {
  std::atomic<uint32_t> next;  // where the next taker starts looking
  uint32_t reserved[15];
  ClaimOwnerSlot slots[kMaxProcesses];
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

namespace detail {

// One process's slot in a domain's table, and the liveness test of tags.
class ClaimOwners {
 public:
  // Every tag is unknown: claims are never repaired (a ring used without a runtime).
  ClaimOwners() = default;
  // Takes a slot of `table` for `self`. With no slot to take (every one
  // held by a live process), logs it and uses the unknown tag: this
  // process's claims then block their ring if it dies inside a call.
  ClaimOwners(ClaimOwnerTable* table, std::string domain_dir, const ProcessId& self);
  ClaimOwners(const ClaimOwners&) = delete;
  ClaimOwners& operator=(const ClaimOwners&) = delete;
  ~ClaimOwners();  // gives the slot back

  // This process's tag, for the claims it makes.
  uint32_t tag() const noexcept { return tag_; }
  // Whether the process that held `tag` when it claimed is alive. False for
  // a slot given back or taken again since; true where it cannot tell (the
  // unknown tag, a registry it cannot read: never repair on a guess).
  bool alive(uint32_t tag) const noexcept;
  // "process 1a2b3c4d" (or "an unknown process"), for log lines.
  std::string describe(uint32_t tag) const;
  // Gives back the slot of `dead` if it still holds one (a reaper, after
  // its registration is gone).
  void release_dead(const ProcessId& dead) noexcept;
  // Gives this process's slot back now (shutdown); the tag becomes unknown.
  void release() noexcept;

 private:
  bool take(bool dead_owners_too);
  ClaimOwnerSlot* slot_of(uint32_t tag) const noexcept;

  ClaimOwnerTable* table_ = nullptr;
  std::string domain_dir_;
  ProcessId self_;
  uint32_t tag_ = kClaimUnknown;
  uint32_t held_state_ = 0;  // our slot's state word while we own it
};

}  // namespace detail
}  // namespace mpod
