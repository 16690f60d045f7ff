#include "options.hpp"

#include <cstdlib>

namespace mpod_bench {

Option value_option(std::string_view name, int& out) {
  return {name, [&out](const std::string& v) { out = std::atoi(v.c_str()); }};
}

Option value_option(std::string_view name, uint64_t& out) {
  return {name, [&out](const std::string& v) { out = std::strtoull(v.c_str(), nullptr, 10); }};
}

Option value_option(std::string_view name, std::string& out) {
  return {name, [&out](const std::string& v) { out = v; }};
}

void parse_options(int argc, char** argv, const std::vector<Option>& options, const std::function<void()>& usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const Option* match = nullptr;
    for (const Option& o : options)
      if (o.name.ends_with('=') ? a.starts_with(o.name) : a == o.name) {
        match = &o;
        break;
      }
    if (!match) {
      usage();
      std::exit(a == "--help" ? 0 : 2);
    }
    match->set(match->name.ends_with('=') ? a.substr(match->name.size()) : std::string());
  }
}

}  // namespace mpod_bench
