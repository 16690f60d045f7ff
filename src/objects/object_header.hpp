// What every named shared object (ring, mempool, heap) does on lookup: wait
// for its creator to finish initialising it, then check its layout version.
#pragma once

#include <cstdint>
#include <string>

#include "mpod/memzone.hpp"

namespace mpod {

// Waits (briefly: creation takes microseconds) until `*magic` holds `want`,
// written with release by the creator, then checks `version`. `kind` and
// `name` name the object in errors ("ring", "mempool"...). Throws corrupt
// when the creator never finished or the version differs.
void wait_initialised(const Memzone& mz, uint32_t* magic, uint32_t want, const uint32_t* version,
                      uint32_t want_version, const char* kind, std::string_view name);

}  // namespace mpod
