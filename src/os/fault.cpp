#include "fault.hpp"

#include <array>
#include <atomic>

namespace mpod::os {
namespace {
struct Fault {
  std::atomic<int> err{0};
  std::atomic<int> remaining{0};
};
std::array<Fault, static_cast<size_t>(Op::count_)> faults;
}  // namespace

void inject_fault(Op op, int err, int times) noexcept {
  auto& f = faults[static_cast<size_t>(op)];
  f.err.store(err);
  f.remaining.store(times);
}

void clear_faults() noexcept {
  for (auto& f : faults) f.remaining.store(0);
}

namespace detail {
int take_fault(Op op) noexcept {
  auto& f = faults[static_cast<size_t>(op)];
  int left = f.remaining.load(std::memory_order_relaxed);
  while (left > 0) {
    if (f.remaining.compare_exchange_weak(left, left - 1)) return f.err.load();
  }
  return 0;
}
}  // namespace detail
}  // namespace mpod::os
