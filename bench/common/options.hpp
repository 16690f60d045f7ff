// Command lines of the benchmark drivers: "--name=value" options and bare
// "--flag"s, each applied in order, so "--repeat=3 --quick" and
// "--quick --repeat=3" mean what they say.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mpod_bench {

// One option a driver accepts.
struct Option {
  // "--repeat=": takes the value after '='; "--quick": a flag, matched whole.
  std::string_view name;
  // Gets the value ("" for a flag); converts and stores it.
  std::function<void(const std::string& value)> set;
};

// "--name=value" stored into `out`: as by std::atoi for an int, by
// std::strtoull (base 10) for a uint64_t, as it is for a string. A malformed
// number gives 0 rather than an error: each driver clamps its settings after
// parsing.
Option value_option(std::string_view name, int& out);
Option value_option(std::string_view name, uint64_t& out);
Option value_option(std::string_view name, std::string& out);

// Applies each of argv[1..argc-1] to the first option that matches it. Any
// other argument calls usage() (which prints to stderr) and exits: with 0 for
// "--help", with 2 for anything else.
void parse_options(int argc, char** argv, const std::vector<Option>& options, const std::function<void()>& usage);

}  // namespace mpod_bench
