#include "claim_owners.hpp"

#include <cstring>

#include "mpod/log.hpp"
#include "registry.hpp"

namespace mpod::detail {

namespace {
constexpr uint32_t kFree = 0, kTaking = 1, kOwned = 2;
constexpr uint32_t kGenBits = 5;
constexpr uint32_t kSlots = kMaxProcesses;
static_assert((kSlots << kGenBits | ((1u << kGenBits) - 1)) < kClaimUnknown, "every tag fits below the unknown tag");

uint32_t kind(uint32_t state) { return state & 3; }
uint32_t generation(uint32_t state) { return state >> 2; }
uint32_t tag_for(uint32_t index, uint32_t state) { return (index + 1) << kGenBits | (generation(state) & ((1u << kGenBits) - 1)); }

ProcessId id_in(const ClaimOwnerSlot& s) {
  ProcessId id;
  std::memcpy(id.bytes.data(), s.id, sizeof s.id);
  return id;
}

// The registry's answer; true when it cannot be read (never take a slot,
// or withdraw a claim, on a guess).
bool owner_alive(const std::string& domain_dir, const ProcessId& id) noexcept {
  try {
    return registry::is_alive(domain_dir, id);
  } catch (const std::exception& e) {
    MPOD_LOG(runtime, warning, "cannot tell whether process %s is alive (%s); taking it as alive",
             id.short_hex().c_str(), e.what());
    return true;
  }
}
}  // namespace

ClaimOwners::ClaimOwners(ClaimOwnerTable* table, std::string domain_dir, const ProcessId& self)
    : table_(table), domain_dir_(std::move(domain_dir)), self_(self) {
  // Free slots first; only a table full of the dead (no reaper ran) makes
  // us ask the registry about owners.
  if (take(false) || take(true)) return;
  MPOD_LOG(runtime, warning,
           "no claim-owner slot is free in %s (all %u held by live processes): if this process is killed "
           "inside a ring or mempool call, that ring stays blocked; reap the dead with `mpod reap`",
           domain_dir_.c_str(), kSlots);
}

ClaimOwners::~ClaimOwners() { release(); }

bool ClaimOwners::take(bool dead_owners_too) {
  for (uint32_t tries = 0; tries < kSlots; ++tries) {
    const uint32_t i = table_->next.fetch_add(1, std::memory_order_relaxed) % kSlots;
    ClaimOwnerSlot& s = table_->slots[i];
    uint32_t state = s.state.load(std::memory_order_acquire);
    if (kind(state) == kTaking) continue;
    if (kind(state) == kOwned && (!dead_owners_too || owner_alive(domain_dir_, id_in(s)))) continue;
    const uint32_t taking = (generation(state) + 1) << 2 | kTaking;
    if (!s.state.compare_exchange_strong(state, taking, std::memory_order_acquire)) continue;
    std::memcpy(s.id, self_.bytes.data(), sizeof s.id);
    held_state_ = (taking & ~3u) | kOwned;
    s.state.store(held_state_, std::memory_order_release);  // the id is complete before anyone can match the tag
    tag_ = tag_for(i, held_state_);
    return true;
  }
  return false;
}

void ClaimOwners::release() noexcept {
  if (!table_ || tag_ == kClaimUnknown) return;
  ClaimOwnerSlot* s = slot_of(tag_);
  uint32_t expected = held_state_;
  s->state.compare_exchange_strong(expected, (held_state_ & ~3u) | kFree, std::memory_order_release);
  tag_ = kClaimUnknown;
}

void ClaimOwners::release_dead(const ProcessId& dead) noexcept {
  if (!table_) return;
  for (ClaimOwnerSlot& s : table_->slots) {
    uint32_t state = s.state.load(std::memory_order_acquire);
    if (kind(state) != kOwned || std::memcmp(s.id, dead.bytes.data(), sizeof s.id) != 0) continue;
    s.state.compare_exchange_strong(state, (state & ~3u) | kFree, std::memory_order_release);
  }
}

ClaimOwnerSlot* ClaimOwners::slot_of(uint32_t tag) const noexcept {
  const uint32_t number = tag >> kGenBits;
  if (!table_ || number == 0 || number > kSlots) return nullptr;
  return &table_->slots[number - 1];
}

bool ClaimOwners::alive(uint32_t tag) const noexcept {
  ClaimOwnerSlot* s = slot_of(tag);
  if (!s) return true;  // the unknown tag (or none of ours): cannot tell
  const uint32_t state = s->state.load(std::memory_order_acquire);
  if (kind(state) != kOwned || tag_for(uint32_t(s - table_->slots), state) != tag) return false;  // given back or taken again
  const ProcessId id = id_in(*s);
  if (s->state.load(std::memory_order_acquire) != state) return false;  // taken again while we read the id
  return owner_alive(domain_dir_, id);
}

std::string ClaimOwners::describe(uint32_t tag) const {
  ClaimOwnerSlot* s = slot_of(tag);
  if (!s) return tag == kClaimSingle ? "a single-producer (consumer) call" : "an unknown process";
  return "process " + id_in(*s).short_hex();
}

}  // namespace mpod::detail
