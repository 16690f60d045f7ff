// The example's own options, after the runtime options and "--" (as in DPDK):
// "--name value" or "--name=value". A bad or unknown option throws UsageError
// naming it; main() prints it with the usage and exits 2.
#pragma once

#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace examples {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// True if --help or -h appears anywhere on the command line.
inline bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") return true;
  return false;
}

class AppArgs {
 public:
  AppArgs(int argc, char** argv, int first) : argc_(argc), argv_(argv), at_(first) {}

  bool done() const { return at_ >= argc_; }
  std::string_view current() const { return argv_[at_]; }

  // True (and consumes it) if the current argument is the flag `name`.
  bool flag(std::string_view name) {
    if (current() != name) return false;
    ++at_;
    return true;
  }

  // True (and consumes it) if the current argument is `name` with a number
  // in [min, max]; throws UsageError for a missing or bad value.
  bool number(std::string_view name, uint64_t* out, uint64_t min = 0, uint64_t max = UINT64_MAX) {
    std::string_view a = current(), value;
    if (a == name) {
      if (at_ + 1 >= argc_) throw UsageError(std::string(name) + " needs a value");
      value = argv_[at_ + 1];
      at_ += 2;
    } else if (a.size() > name.size() && a.starts_with(name) && a[name.size()] == '=') {
      value = a.substr(name.size() + 1);
      at_ += 1;
    } else {
      return false;
    }
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size() || v < min || v > max)
      throw UsageError(std::string(name) + " needs a whole number from " + std::to_string(min) + " to " +
                       std::to_string(max) + ", got '" + std::string(value) + "'");
    *out = v;
    return true;
  }

  [[noreturn]] void unknown() const {
    throw UsageError("unknown option '" + std::string(current()) + "'");
  }

 private:
  int argc_;
  char** argv_;
  int at_;
};

}  // namespace examples
