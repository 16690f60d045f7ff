#include "shared_config.hpp"

#include <cstddef>
#include <algorithm>
#include <cstring>

#include "../memory/shared_memory.hpp"

namespace mpod {

namespace {
uint32_t fnv1a(const void* data, size_t len, uint32_t h) {
  auto p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}
}  // namespace

uint32_t config_checksum(const ConfigHeader& header, const MemoryLayout& memory) noexcept {
  uint32_t h = 2166136261u;
  h = fnv1a(&header, offsetof(ConfigHeader, checksum), h);
  h = fnv1a(&memory.n_lists, sizeof memory.n_lists, h);
  h = fnv1a(memory.lists, sizeof memory.lists, h);
  return h;
}

HeaderCheck check_config(const void* bytes, size_t len, uint64_t file_size) {
  if (len < sizeof(ConfigHeader) || file_size < sizeof(ConfigHeader))
    return {Errc::corrupt, "truncated to " + std::to_string(std::min<uint64_t>(len, file_size)) + " bytes"};
  ConfigHeader h;
  std::memcpy(static_cast<void*>(&h), bytes, sizeof h);
  if (h.magic != SharedConfig::kMagic) return {Errc::corrupt, "bad magic number"};
  if (h.version != SharedConfig::kVersion || h.layout_size != sizeof(SharedConfig))
    return {Errc::version_mismatch, "layout version " + std::to_string(h.version) + " (" +
                                        std::to_string(h.layout_size) + " bytes) but this program uses version " +
                                        std::to_string(SharedConfig::kVersion) + " (" +
                                        std::to_string(sizeof(SharedConfig)) + " bytes)"};
  if (file_size != sizeof(SharedConfig))
    return {Errc::corrupt, "size " + std::to_string(file_size) + ", expected " + std::to_string(sizeof(SharedConfig))};
  if (len < kConfigPrefixBytes) return {Errc::corrupt, "truncated to " + std::to_string(len) + " bytes"};
  ConfigPrefix c;
  std::memcpy(static_cast<void*>(&c), bytes, sizeof c);
  if (config_checksum(c.header, c.memory) != c.header.checksum) return {Errc::corrupt, "checksum mismatch"};
  if (std::string why = layout_problem(c.memory, c.header.base_va, c.header.va_len); !why.empty())
    return {Errc::corrupt, why};
  return {};
}

}  // namespace mpod
