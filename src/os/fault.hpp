// Private to the os layer: consults the fault-injection table; maps errno to codes.
#pragma once
#include "os.hpp"

namespace mpod::os::detail {
// Returns the injected errno for `op` (and consumes one use), or 0.
int take_fault(Op op) noexcept;
// The error code for a failed call's errno (a followed link is untrusted: O_NOFOLLOW refused it).
Errc errc_for(int err) noexcept;
}  // namespace mpod::os::detail
