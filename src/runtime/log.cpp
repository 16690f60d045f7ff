#include "mpod/log.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace mpod {

namespace {
constexpr size_t kComponents = static_cast<size_t>(Component::count_);
const char* const kComponentNames[kComponents] = {"os", "runtime", "memory", "fbarray",
                                                   "memzone", "ipc", "app", "heap", "mempool"};
const char* const kLevelNames[] = {"ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"};

struct Levels {
  std::array<std::atomic<int>, kComponents> v;
  Levels() {
    for (auto& x : v) x.store(static_cast<int>(LogLevel::notice));
  }
};
std::array<std::atomic<int>, kComponents>& levels() {
  static Levels l;
  return l.v;
}

std::mutex tag_mutex;
char process_tag[40] = "";

bool parse_level(std::string_view s, LogLevel* out) {
  static const std::pair<const char*, LogLevel> names[] = {
      {"error", LogLevel::error}, {"err", LogLevel::error},   {"warning", LogLevel::warning},
      {"warn", LogLevel::warning}, {"notice", LogLevel::notice}, {"info", LogLevel::info},
      {"debug", LogLevel::debug}};
  for (auto& [n, l] : names)
    if (s == n) return *out = l, true;
  // DPDK users pass numeric levels (1..8); map them onto ours.
  if (s.size() == 1 && s[0] >= '1' && s[0] <= '8') {
    int v = s[0] - '0';
    *out = v <= 4 ? LogLevel::error : v == 5 ? LogLevel::warning : v == 6 ? LogLevel::notice
           : v == 7 ? LogLevel::info : LogLevel::debug;
    return true;
  }
  return false;
}
}  // namespace

const char* component_name(Component c) noexcept {
  auto i = static_cast<size_t>(c);
  return i < kComponents ? kComponentNames[i] : "?";
}

namespace log {

bool set_level(std::string_view component, std::string_view level_name) {
  LogLevel l;
  if (!parse_level(level_name, &l)) return false;
  // DPDK spells components "lib.eal"; accept a "lib." prefix and "eal" for runtime.
  if (component.starts_with("lib.")) component.remove_prefix(4);
  if (component == "eal") component = "runtime";
  if (component.empty() || component == "*") {
    for (auto& x : levels()) x.store(static_cast<int>(l));
    return true;
  }
  for (size_t i = 0; i < kComponents; ++i) {
    if (component == kComponentNames[i]) {
      levels()[i].store(static_cast<int>(l));
      return true;
    }
  }
  return false;
}

void set_level(Component c, LogLevel l) noexcept {
  levels()[static_cast<size_t>(c)].store(static_cast<int>(l));
}

LogLevel level(Component c) noexcept {
  return static_cast<LogLevel>(levels()[static_cast<size_t>(c)].load(std::memory_order_relaxed));
}

void set_process_tag(std::string_view tag) {
  std::lock_guard g(tag_mutex);
  size_t n = std::min(tag.size(), sizeof(process_tag) - 1);
  std::memcpy(process_tag, tag.data(), n);
  process_tag[n] = '\0';
}

void write(Component c, LogLevel l, const char* fmt, ...) {
  char body[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  char line[1200];
  {
    std::lock_guard g(tag_mutex);
    if (process_tag[0])
      std::snprintf(line, sizeof line, "mpod[%s] %s %s: %s\n", process_tag, component_name(c),
                    kLevelNames[static_cast<int>(l)], body);
    else
      std::snprintf(line, sizeof line, "mpod %s %s: %s\n", component_name(c),
                    kLevelNames[static_cast<int>(l)], body);
  }
  // One write per line so lines from many processes do not interleave.
  std::fputs(line, stderr);
}

}  // namespace log
}  // namespace mpod
