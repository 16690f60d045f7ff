#include "mpod/options.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "../os/os.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

namespace {
[[noreturn]] void bad(const std::string& what) {
  throw Error(Errc::invalid_argument, what + " (see --help for the runtime options)");
}

uint64_t parse_u64(std::string_view opt, const std::string& v, int base) {
  if (v.empty() || v[0] == '-') bad("option " + std::string(opt) + " needs a non-negative number, got '" + v + "'");
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(v.c_str(), &end, base);
  if (errno != 0 || *end != '\0')
    bad("option " + std::string(opt) + " needs a number, got '" + v + "'");
  return x;
}

double parse_seconds(std::string_view opt, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || errno != 0 || *end != '\0' || !(x >= 0) || x > 86400.0 * 365)
    bad("option " + std::string(opt) + " needs a number of seconds >= 0, got '" + v + "'");
  return x;
}

void check_path_option(std::string_view opt, const std::string& v) {
  if (v.empty()) bad("option " + std::string(opt) + " needs a directory");
}

void check_prefix(const std::string& v) {
  if (v.empty() || v.size() > 64)
    bad("--file-prefix must be 1 to 64 characters, got '" + v + "'");
  for (char c : v)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
      bad("--file-prefix may contain only letters, digits, '_', '-' and '.', got '" + v + "'");
  if (v == "." || v == "..") bad("--file-prefix cannot be '" + v + "'");
}
}  // namespace

int parse_options(int argc, char** argv, Options& out) {
  int i = 1;
  while (i < argc) {
    std::string arg = argv[i];
    if (arg == "--") return i + 1;
    if (arg.empty() || arg[0] != '-' || arg == "-") return i;

    std::string name = arg, value;
    bool has_value = false;
    if (arg.starts_with("--")) {
      if (auto eq = arg.find('='); eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        has_value = true;
      }
    } else if (arg.size() > 2) {  // -m64
      name = arg.substr(0, 2);
      value = arg.substr(2);
      has_value = true;
    }
    auto take_value = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) bad("option " + name + " needs a value");
      return argv[++i];
    };
    auto no_value = [&] {
      if (has_value) bad("option " + name + " takes no value");
    };

    if (name == "--proc-type") {
      std::string v = take_value();
      if (v == "primary") out.proc_type = ProcType::primary;
      else if (v == "secondary") out.proc_type = ProcType::secondary;
      else if (v == "auto") out.proc_type = ProcType::automatic;
      else bad("--proc-type must be primary, secondary or auto, got '" + v + "'");
    } else if (name == "--file-prefix") {
      out.file_prefix = take_value();
      check_prefix(out.file_prefix);
    } else if (name == "--runtime-dir") {
      out.runtime_dir = take_value();
      check_path_option(name, out.runtime_dir);
    } else if (name == "--huge-dir") {
      out.huge_dir = take_value();
      check_path_option(name, out.huge_dir);
    } else if (name == "--no-huge") {
      no_value();
      out.no_huge = true;
    } else if (name == "-m" || name == "--memory") {
      out.memory_mb = parse_u64(name, take_value(), 10);
      if (out.memory_mb == 0 || out.memory_mb > (1u << 20))
        bad("option " + name + " needs a size in MB from 1 to 1048576");
    } else if (name == "--base-virtaddr") {
      std::string v = take_value();
      out.base_virtaddr = parse_u64(name, v, 0);
      if (out.base_virtaddr == 0 || out.base_virtaddr % os::system_page_size() != 0 ||
          out.base_virtaddr >= (1ull << 47))
        bad("--base-virtaddr needs a page-aligned user-space address such as 0x4000000000, got '" + v + "'");
    } else if (name == "--log-level") {
      std::string v = take_value();
      auto colon = v.rfind(':');
      std::string comp = colon == std::string::npos ? "" : v.substr(0, colon);
      std::string lvl = colon == std::string::npos ? v : v.substr(colon + 1);
      if (!log::set_level(comp, lvl))
        bad("--log-level must be [component:]level with component one of os, runtime, memory, "
            "fbarray, memzone, ipc, app, heap, mempool and level one of error, warning, notice, info, debug; got '" +
            v + "'");
      out.log_levels.push_back(v);
    } else if (name == "--group") {
      out.group = take_value();
      if (out.group.empty()) bad("--group needs a group name or number");
    } else if (name == "--wait-primary") {
      out.wait_primary_s = parse_seconds(name, take_value());
    } else {
      bad("unknown option '" + arg + "'");
    }
    ++i;
  }
  return i;
}

std::string default_runtime_dir() {
  if (os::effective_uid() == 0) return "/var/run/mpod";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) return std::string(xdg) + "/mpod";
  return "/tmp/mpod-" + std::to_string(os::effective_uid());
}

const char* options_usage() {
  return "Runtime options (before --):\n"
         "  --proc-type=primary|secondary|auto   role of this process (default primary)\n"
         "  --file-prefix=NAME                   shared memory domain name (default mpod)\n"
         "  --runtime-dir=DIR                    shared runtime directory (default /var/run/mpod\n"
         "                                       as root, else $XDG_RUNTIME_DIR/mpod)\n"
         "  --huge-dir=DIR                       hugetlbfs mount to use (default: every mount)\n"
         "  --no-huge                            plain files in the runtime dir instead of hugepages\n"
         "  -m, --memory=MB                      memory the primary allocates (default 64)\n"
         "  --base-virtaddr=ADDR                 start of the shared virtual range (primary)\n"
         "  --wait-primary=SECONDS               secondary: wait this long for a primary\n"
         "  --group=NAME|GID                     share files, sockets and the channel with one\n"
         "                                       group (default: owner only)\n"
         "  --log-level=[component:]level        error|warning|notice|info|debug; components:\n"
         "                                       os runtime memory fbarray memzone ipc app\n";
}

}  // namespace mpod
