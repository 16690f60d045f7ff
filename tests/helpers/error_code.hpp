// code_of: the mpod::Errc a call throws, for tests of error contracts.
#pragma once

#include <functional>

#include "mpod/error.hpp"

namespace mpod::test {

// The code of the mpod::Error `f` throws; Errc::system when it throws
// nothing, which shows as a mismatch in the test.
inline Errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return Errc::system;
}

}  // namespace mpod::test
