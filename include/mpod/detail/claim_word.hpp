// A ring side's head word: the index, and who made the claims just below it.
//
// Bits 0-31: the head index (free-running, as in detail/ring_ops.hpp).
// Bits 48-63: the owner tag of the last claim, the one that ends at the
//   index: a process's tag (src/runtime/claim_owners.hpp), kClaimSingle for
//   a single-producer (consumer) call, or kClaimUnknown.
// Bits 32-47: the low 16 bits of the first index of the run: the claims
//   that owner made in a row up to the head. (Two threads of one process can
//   hold adjacent claims; both die with it.) Single calls store the index
//   alone: owner kClaimSingle, no run. They exclude every other call of
//   their side, so all that lies between the tail and such a head is
//   complete single calls.
//
// The CAS that makes a claim writes the whole word, so knowing who holds a
// claim costs the claimer no store of its own; and the value it replaces
// tells the claimer who holds the claims just before its own. A claim of a
// single call is stored after its copy: it is complete, only not published.
//
// Why a run's start and not its length: with the same owner claiming again
// the word only grows by k (claim_word), one add, as the bare index did;
// a length would need its own add, compare and shift before the CAS. A run
// is restarted at 2^15, so its length is known exactly as (index - start)
// mod 2^16 while claims are under 2^15 elements; a longer claim can make it
// read short, never long, and a repair then waits rather than guess.
#pragma once

#include <cstdint>

namespace mpod::detail {

inline constexpr uint32_t kClaimSingle = 0;
inline constexpr uint32_t kClaimUnknown = 0xFFFF;
inline constexpr uint32_t kClaimRunRestart = 0x8000;

[[gnu::always_inline]] inline uint32_t claim_index(uint64_t word) noexcept { return uint32_t(word); }
[[gnu::always_inline]] inline uint32_t claim_owner(uint64_t word) noexcept { return uint32_t(word >> 48); }
// How many indices below the head are surely the owner's (at most the run).
[[gnu::always_inline]] inline uint32_t claim_run(uint64_t word) noexcept {
  return (uint32_t(word) - uint32_t(word >> 32)) & 0xFFFF;
}

// The word after `owner` claims k indices on top of `pred`. The usual case
// (the same owner again, its run short, no wrap of the index) is one add on
// the word: the tests are branches the CPU predicts, so the CAS waits only
// for the add, as it waited for the index's add before.
[[gnu::always_inline]] inline uint64_t claim_word(uint64_t pred, unsigned k, uint32_t owner) noexcept {
  const uint32_t start = uint32_t(pred);
  if (__builtin_expect(claim_owner(pred) == owner, 1) &&
      __builtin_expect(((start - uint32_t(pred >> 32)) & 0xFFFF) < kClaimRunRestart, 1) &&
      __builtin_expect(start + k >= start, 1))
    return pred + k;
  return uint64_t(owner) << 48 | uint64_t(start & 0xFFFF) << 32 | uint32_t(start + k);
}

}  // namespace mpod::detail
