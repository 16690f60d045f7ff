// Whether another process of the domain is alive, by its mpod process id
// (never by PID: the server and its clients live in different PID namespaces).
#pragma once

#include <cstdint>
#include <cstring>

#include "mpod/runtime.hpp"

namespace csmp {

inline bool is_alive(mpod::Runtime& rt, const uint8_t (&id)[16]) {
  for (const auto& p : rt.processes())
    if (p.alive && std::memcmp(p.id.bytes.data(), id, 16) == 0) return true;
  return false;
}

inline bool primary_alive(mpod::Runtime& rt) {
  for (const auto& p : rt.processes())
    if (p.alive && p.role == mpod::Role::primary) return true;
  return false;
}

}  // namespace csmp
