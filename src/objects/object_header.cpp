#include "object_header.hpp"

#include <atomic>

#include "../os/os.hpp"
#include "mpod/error.hpp"

namespace mpod {

void wait_initialised(const Memzone& mz, uint32_t* magic, uint32_t want, const uint32_t* version,
                      uint32_t want_version, const char* kind, std::string_view name) {
  for (uint32_t step = 0; std::atomic_ref<uint32_t>(*magic).load(std::memory_order_acquire) != want; ++step) {
    if (step > 1000000)
      throw Error(Errc::corrupt, "memzone " + mz.name + " is not an initialised " + kind +
                                     "; its creator died while creating it, or something else uses the name. "
                                     "Destroy it and create it again");
    os::spin_pause(step | 63);
  }
  if (*version != want_version)
    throw Error(Errc::corrupt, std::string(kind) + " '" + std::string(name) + "' has layout version " +
                                   std::to_string(*version) + ", this process expects " +
                                   std::to_string(want_version) + "; all processes must run the same mpod version");
}

}  // namespace mpod
