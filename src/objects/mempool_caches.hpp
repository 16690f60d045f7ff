// What the Runtime tells the mempools at shutdown (internal).
#pragma once

namespace mpod {

class Runtime;

// Flushes every cache held by this process's threads back to its pool and
// releases it, and makes every thread forget its caches: after this no
// thread of the process touches a pool's memory through a cache.
void release_process_caches(Runtime& rt) noexcept;

}  // namespace mpod
