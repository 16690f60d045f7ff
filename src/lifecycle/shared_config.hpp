// The shared config: <domain>/config, mapped by every process of a domain.
//
// Layout: a versioned header, the memory layout, the memzone table. The
// header's checksum covers everything that never changes after start-up, so
// a truncated or scribbled file is refused rather than trusted. Written by the
// primary as config.new and renamed into place when complete, so a secondary
// never sees a half-built config.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "../memory/fbarray_header.hpp"
#include "../memory/memory_layout.hpp"
#include "../objects/memzone_table.hpp"
#include "../runtime/claim_owners.hpp"

namespace mpod {

struct ConfigHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t layout_size;  // sizeof(SharedConfig) of the writer
  uint8_t primary_id[16];
  uint64_t created_ns;
  uint64_t base_va;
  uint64_t va_len;
  uint32_t no_huge;
  uint32_t checksum;  // of the immutable part, see config_checksum()
  std::atomic<uint32_t> ready;
  uint32_t reserved;
};
static_assert(sizeof(ConfigHeader) == 72);

struct SharedConfig {
  static constexpr uint64_t kMagic = 0x4749464e43444f4dull;  // "MODCNFIG"
  // Bump whenever any struct in the shared config changes.
  static constexpr uint32_t kVersion = 2;  // 2: the claim owners' table
  // Bytes of the config file that hold cross-process locks (OFD byte locks).
  static constexpr uint32_t kMemoryLockByte = 0;
  static constexpr uint32_t kMemzoneLockByte = 1;

  ConfigHeader header;
  MemoryLayout memory;
  MemzoneTable memzones;
  ClaimOwnerTable claim_owners;  // changes while processes come and go: outside the checksum
};
static_assert(alignof(SharedConfig) == 8);

// The part of the config a secondary checks before it maps anything, laid
// out as SharedConfig begins: small enough to copy (the memzone table after
// it is most of the file).
struct ConfigPrefix {
  ConfigHeader header;
  MemoryLayout memory;
};
static_assert(offsetof(SharedConfig, memory) == offsetof(ConfigPrefix, memory) &&
              offsetof(SharedConfig, memzones) >= sizeof(ConfigPrefix));
constexpr size_t kConfigPrefixBytes = offsetof(SharedConfig, memzones);

uint32_t config_checksum(const ConfigHeader& header, const MemoryLayout& memory) noexcept;
inline uint32_t config_checksum(const SharedConfig& c) noexcept { return config_checksum(c.header, c.memory); }

// Whether the `len` bytes at `bytes` are a config a primary of this version
// finished writing: size, magic, version, checksum, and a memory layout that
// fits the shared range it names (layout_problem). A group member can write
// the file and recompute the checksum, so what this passes is still only
// data: every address is used through the secondary's own checked copy.
// Pure: unit tests and the fuzzer drive it on bytes.
// `bytes` holds the file's first `len` bytes (at least kConfigPrefixBytes
// to pass) of a file of `file_size` bytes.
HeaderCheck check_config(const void* bytes, size_t len, uint64_t file_size);
inline HeaderCheck check_config(const void* bytes, size_t len) { return check_config(bytes, len, len); }

}  // namespace mpod
