// Logging by component and level.
//
// Lines go to stderr as "mpod <component> <LEVEL>: message". The level of each
// component is set by --log-level=[component:]level (repeatable). At debug
// level, the os layer logs every file it opens, locks, maps or removes, with
// errno on failure.
#pragma once

#include <cstdarg>
#include <string_view>

namespace mpod {

enum class LogLevel { error = 0, warning = 1, notice = 2, info = 3, debug = 4 };

enum class Component { os = 0, runtime, memory, fbarray, memzone, ipc, app, heap, mempool, count_ };

const char* component_name(Component c) noexcept;

namespace log {

// Sets the level of one component, or of all when `component` is empty.
// Returns false (and changes nothing) when the component or level name is unknown.
bool set_level(std::string_view component, std::string_view level);
void set_level(Component c, LogLevel level) noexcept;
LogLevel level(Component c) noexcept;
inline bool enabled(Component c, LogLevel l) noexcept { return l <= level(c); }

// Tag printed in each line after "mpod", e.g. the short process id. Copied.
void set_process_tag(std::string_view tag);

void write(Component c, LogLevel l, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

}  // namespace log
}  // namespace mpod

// Cheap when disabled: arguments are not evaluated.
#define MPOD_LOG(component, level, ...)                                              \
  do {                                                                               \
    if (::mpod::log::enabled(::mpod::Component::component, ::mpod::LogLevel::level)) \
      ::mpod::log::write(::mpod::Component::component, ::mpod::LogLevel::level,      \
                         __VA_ARGS__);                                               \
  } while (0)
