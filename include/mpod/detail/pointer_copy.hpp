// Copies of small arrays of pointers, two at a time in SSE2 registers on
// x86-64: the inner loops of the ring and mempool fast paths. GCC at -O2
// leaves a loop of unknown count scalar, and a memcpy call costs more than
// the copy for the 1-32 pointers of a burst. Include the public headers,
// not this.
#pragma once

#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// GCC 12 warns (-Warray-bounds) about the two-at-a-time loops where a call
// passes one pointer (a constant n of 1), although the loop cannot run then.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"

namespace mpod::detail {

// 8 bytes that may alias anything: a ring's slots hold the caller's pointers
// or records, read and written through whichever type the caller used.
using AliasWord [[gnu::may_alias]] = uint64_t;

// dst[i] = src[i] for i < n.
[[gnu::always_inline]] inline void copy_pointers(void* dst, const void* src, unsigned n) noexcept {
  auto* d = static_cast<AliasWord*>(dst);
  auto* s = static_cast<const AliasWord*>(src);
  unsigned i = 0;
#if defined(__SSE2__)
  for (; i + 4 <= n; i += 4) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 2));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), a);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i + 2), b);
  }
#else
  for (; i + 4 <= n; i += 4) {
    d[i] = s[i];
    d[i + 1] = s[i + 1];
    d[i + 2] = s[i + 2];
    d[i + 3] = s[i + 3];
  }
#endif
  for (; i < n; ++i) d[i] = s[i];
}

// dst[i] = top[-1 - i] for i < n: the last n of an array ending at `top`,
// newest first (a mempool cache hands out its most recently freed objects).
[[gnu::always_inline]] inline void copy_pointers_reversed(void* const* top, void** dst, unsigned n) noexcept {
  void* const* src = top;
  void** const end = dst + n;
#if defined(__SSE2__)
  for (; end - dst >= 4; dst += 4) {  // two registers a round, each with its halves swapped
    src -= 4;
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2));
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_shuffle_epi32(hi, 0x4e));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2), _mm_shuffle_epi32(lo, 0x4e));
  }
#endif
  while (dst != end) *dst++ = *--src;
}

// Whether every src[i] - base (i < n) is a multiple of 64 no greater than
// last_offset (which must be below 2^63), and with kCopy, dst[i] = src[i] in
// the same pass. Branch-free: an offset below base wraps to a value with the
// top bit set, one past last_offset makes last_offset - offset negative (top
// bit set).
template <bool kCopy = true>
[[gnu::always_inline]] inline bool copy_pointers_checked(void** dst, void* const* src, unsigned n, uintptr_t base,
                                                         uint64_t last_offset) noexcept {
  constexpr uint64_t kTop = uint64_t(1) << 63;
  uint64_t offsets = 0, margins = 0;
  unsigned i = 0;
#if defined(__SSE2__)
  const __m128i vbase = _mm_set1_epi64x(int64_t(base)), vlast = _mm_set1_epi64x(int64_t(last_offset));
  __m128i voffsets = _mm_setzero_si128(), vmargins = _mm_setzero_si128();
  for (; i + 4 <= n; i += 4) {
    const __m128i p = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 2));
    if constexpr (kCopy) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), p);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 2), q);
    }
    const __m128i dp = _mm_sub_epi64(p, vbase), dq = _mm_sub_epi64(q, vbase);
    voffsets = _mm_or_si128(voffsets, _mm_or_si128(dp, dq));
    vmargins = _mm_or_si128(vmargins, _mm_or_si128(_mm_sub_epi64(vlast, dp), _mm_sub_epi64(vlast, dq)));
  }
  alignas(16) uint64_t lanes[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), voffsets);
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes + 2), vmargins);
  offsets = lanes[0] | lanes[1];
  margins = lanes[2] | lanes[3];
#endif
  for (; i < n; ++i) {
    const uint64_t d = reinterpret_cast<uintptr_t>(src[i]) - base;
    if constexpr (kCopy) dst[i] = src[i];
    offsets |= d;
    margins |= last_offset - d;
  }
  return ((offsets & (kTop | 63)) | (margins & kTop)) == 0;
}

// The check of copy_pointers_checked alone.
[[gnu::always_inline]] inline bool pointers_in_range(void* const* src, unsigned n, uintptr_t base,
                                                     uint64_t last_offset) noexcept {
  return copy_pointers_checked<false>(nullptr, src, n, base, last_offset);
}

}  // namespace mpod::detail

#pragma GCC diagnostic pop
