// libFuzzer target for the channel's message decoder: any bytes, any count
// of descriptors said to have arrived. decode() must never read outside the
// datagram, never crash, and whatever it accepts must be self-consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "src/ipc/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte chooses how many descriptors "arrived" with the datagram.
  const size_t fds = data[0] % 10;
  std::span<const uint8_t> datagram(data + 1, size - 1);
  mpod::wire::DecodeError why;
  auto d = mpod::wire::decode(datagram, fds, &why);
  if (!d) {
    if (why.reason.empty()) std::abort();  // every refusal says why (it is logged)
    return 0;
  }
  // What is accepted lies inside the datagram and obeys the limits.
  if (d->payload.size() > mpod::wire::kMaxPayload) std::abort();
  if (!d->payload.empty() && (d->payload.data() < datagram.data() ||
                              d->payload.data() + d->payload.size() > datagram.data() + datagram.size()))
    std::abort();
  if (d->name.size() > mpod::wire::kMaxName) std::abort();
  const bool bare = d->type == mpod::wire::Type::doorbell || d->type == mpod::wire::Type::marker;
  if (!bare) mpod::wire::validate_action_name(d->name);  // throws (and so crashes the fuzzer) if a bad name got through
  if (d->sender.empty()) std::abort();
  return 0;
}
