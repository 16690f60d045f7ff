#include <cstdio>

#include "../os/os.hpp"
#include "mpod/process.hpp"

namespace mpod {

ProcessId ProcessId::random() {
  ProcessId id;
  do os::random_bytes(id.bytes.data(), id.bytes.size());
  while (id.empty());
  return id;
}

std::optional<ProcessId> ProcessId::parse(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  ProcessId id;
  for (size_t i = 0; i < 16; ++i) {
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = nib(hex[2 * i]), lo = nib(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return id;
}

std::string ProcessId::hex() const {
  std::string s(32, '0');
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < 16; ++i) {
    s[2 * i] = digits[bytes[i] >> 4];
    s[2 * i + 1] = digits[bytes[i] & 15];
  }
  return s;
}

std::string ProcessId::short_hex() const { return hex().substr(0, 8); }

bool ProcessId::empty() const noexcept {
  for (auto b : bytes)
    if (b) return false;
  return true;
}

const char* role_name(Role r) noexcept { return r == Role::primary ? "primary" : "secondary"; }

}  // namespace mpod
