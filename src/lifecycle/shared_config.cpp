#include "shared_config.hpp"

#include <cstddef>
#include <cstring>
#include <memory>

#include "../memory/shared_memory.hpp"

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

HeaderCheck check_config(const void* bytes, size_t len) {
  if (len < sizeof(ConfigHeader)) return {Errc::corrupt, "truncated to " + std::to_string(len) + " bytes"};
  ConfigHeader h;
  std::memcpy(static_cast<void*>(&h), bytes, sizeof h);
  if (h.magic != SharedConfig::kMagic) return {Errc::corrupt, "bad magic number"};
  if (h.version != SharedConfig::kVersion || h.layout_size != sizeof(SharedConfig))
    return {Errc::version_mismatch, "layout version " + std::to_string(h.version) + " (" +
                                        std::to_string(h.layout_size) + " bytes) but this program uses version " +
                                        std::to_string(SharedConfig::kVersion) + " (" +
                                        std::to_string(sizeof(SharedConfig)) + " bytes)"};
  if (len != sizeof(SharedConfig))
    return {Errc::corrupt, "size " + std::to_string(len) + ", expected " + std::to_string(sizeof(SharedConfig))};
  auto c = std::make_unique<SharedConfig>();
  std::memcpy(static_cast<void*>(c.get()), bytes, sizeof(SharedConfig));
  if (config_checksum(*c) != c->header.checksum) return {Errc::corrupt, "checksum mismatch"};
  if (std::string why = layout_problem(c->memory, c->header.base_va, c->header.va_len); !why.empty())
    return {Errc::corrupt, why};
  return {};
}

}  // namespace mpod
