#include "shared_config.hpp"

#include <cstddef>

namespace mpod {

namespace {
uint32_t fnv1a(const void* data, size_t len, uint32_t h) {
  auto p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}
}  // namespace

uint32_t config_checksum(const SharedConfig& c) noexcept {
  uint32_t h = 2166136261u;
  h = fnv1a(&c.header, offsetof(ConfigHeader, checksum), h);
  h = fnv1a(&c.memory.n_lists, sizeof c.memory.n_lists, h);
  h = fnv1a(c.memory.lists, sizeof c.memory.lists, h);
  return h;
}

}  // namespace mpod
