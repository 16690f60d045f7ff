// Checks of an fbarray file's header, as read from a file another process
// (perhaps a hostile group member) wrote. A pure function, so a fuzzer and
// unit tests drive it without files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mpod/error.hpp"

namespace mpod {

// The largest element an fbarray holds: far above any mpod uses, small
// enough that a header's len * elt_size cannot overflow.
constexpr uint32_t kMaxEltSize = 1u << 16;

struct HeaderCheck {
  Errc code = Errc::corrupt;  // corrupt or version_mismatch when `why` is set
  std::string why;            // empty: the header is sound
};

// Whether the `len` bytes at `bytes` (the file's first bytes, len 0 if it
// could not be read whole) are a sound header for a file of `file_size` bytes.
HeaderCheck check_fbarray_header(const void* bytes, size_t len, uint64_t file_size);

}  // namespace mpod
