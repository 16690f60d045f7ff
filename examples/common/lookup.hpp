// Looking up what the primary creates. A secondary may attach (the runtime
// is up) a moment before its primary has created the rings and pools, so
// lookups retry while the object does not exist yet, for up to `seconds`.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "mpod/error.hpp"

namespace examples {

// Calls fn() until it does not throw mpod::Error(not_found) or `seconds`
// have passed; then rethrows, adding `hint` (what the user should do).
template <class Fn>
auto lookup_when_created(Fn&& fn, double seconds, const std::string& hint) -> decltype(fn()) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    try {
      return fn();
    } catch (const mpod::Error& e) {
      if (e.code() != mpod::Errc::not_found) throw;
      if (std::chrono::steady_clock::now() >= deadline)
        throw mpod::Error(e.code(), std::string(e.what()) + " (waited " + std::to_string(int(seconds)) + " s); " + hint,
                          e.path(), e.sys_errno());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace examples
