// libFuzzer target for what a secondary reads from files a group member can
// write before it maps anything: the shared config (header and memory
// layout) and an fbarray's header. The first byte chooses the file, and for
// the config whether to play the hostile member who fixes up the magic,
// version and checksum (anyone can recompute them), so the fuzzer reaches
// the layout checks. Whatever is accepted must hold the invariants the
// mapping code relies on; every refusal must say why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "src/lifecycle/shared_config.hpp"
#include "src/memory/fbarray_header.hpp"

namespace {
using mpod::SharedConfig;

void require(bool ok) {
  if (!ok) std::abort();
}

// What SharedMemory::attach and map_list_segments rely on, checked again here independently.
void check_accepted_layout(const mpod::ConfigHeader& h, const mpod::MemoryLayout& m) {
  const uint64_t base = h.base_va, len = h.va_len;
  require(m.n_lists >= 1 && m.n_lists <= mpod::MemoryLayout::kMaxLists);
  require(base + len > base && base + len <= 0x800000000000ull);
  for (uint32_t i = 0; i < m.n_lists; ++i) {
    const auto& l = m.lists[i];
    require(l.seg_size >= l.page_size && l.page_size > 0 && l.base_va % l.page_size == 0);
    const unsigned __int128 end = (unsigned __int128)l.base_va + (unsigned __int128)l.capacity * l.seg_size;
    require(l.base_va >= base && end <= (unsigned __int128)base + len);
    const size_t n = strnlen(l.fbarray_name, sizeof l.fbarray_name);
    require(n < sizeof l.fbarray_name && !std::memchr(l.fbarray_name, '/', n));
    const size_t b = strnlen(l.backing_name, sizeof l.backing_name);
    require(b > 0 && b < sizeof l.backing_name && !std::memchr(l.backing_name, '/', b));
    require(std::strcmp(l.backing_name, "..") != 0 && std::strcmp(l.backing_name, ".") != 0);
  }
}

// The input is the file's first bytes; the file is taken to be whole (the
// size a config has) when fixing up, else as long as the input.
void fuzz_config(const uint8_t* data, size_t size, bool fix_up) {
  mpod::ConfigPrefix c{};
  const size_t n = size < sizeof c ? size : sizeof c;
  std::memcpy(static_cast<void*>(&c), data, n);
  const size_t len = fix_up ? sizeof c : n;
  const uint64_t file_size = fix_up ? sizeof(SharedConfig) : size;
  if (fix_up) {
    c.header.magic = SharedConfig::kMagic;
    c.header.version = SharedConfig::kVersion;
    c.header.layout_size = sizeof(SharedConfig);
    c.header.checksum = mpod::config_checksum(c.header, c.memory);
  }
  const auto check = mpod::check_config(&c, len, file_size);
  if (!check.why.empty()) return;
  require(file_size == sizeof(SharedConfig) && len >= mpod::kConfigPrefixBytes);
  check_accepted_layout(c.header, c.memory);
}

void fuzz_fbarray(const uint8_t* data, size_t size) {
  if (size < 8) return;
  uint64_t file_size;
  std::memcpy(&file_size, data, 8);
  const auto check = mpod::check_fbarray_header(data + 8, size - 8, file_size);
  if (!check.why.empty()) return;
  // Accepted: the mask's last word lies inside the file the header describes.
  struct Fields {
    uint64_t magic;
    uint32_t version, header_size, len, elt_size;
    uint64_t data_offset, mask_offset, file_size;
  } f;
  require(size - 8 >= sizeof f);
  std::memcpy(&f, data + 8, sizeof f);
  require(f.len > 0 && f.elt_size > 0 && f.elt_size <= mpod::kMaxEltSize);
  require(f.data_offset + uint64_t(f.len) * f.elt_size <= f.mask_offset);
  require(f.mask_offset + (uint64_t(f.len) + 63) / 64 * 8 <= f.file_size && f.file_size <= file_size);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  switch (data[0] % 3) {
    case 0: fuzz_config(data + 1, size - 1, false); break;
    case 1: fuzz_config(data + 1, size - 1, true); break;
    case 2: fuzz_fbarray(data + 1, size - 1); break;
  }
  return 0;
}
