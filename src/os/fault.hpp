// Private to the os layer: consults the fault-injection table.
#pragma once
#include "os.hpp"

namespace mpod::os::detail {
// Returns the injected errno for `op` (and consumes one use), or 0.
int take_fault(Op op) noexcept;
}  // namespace mpod::os::detail
