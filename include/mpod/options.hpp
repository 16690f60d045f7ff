// Runtime options: DPDK-style command line, or an Options struct.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mpod {

enum class ProcType { primary, secondary, automatic };

struct Options {
  ProcType proc_type = ProcType::primary;   // --proc-type=primary|secondary|auto
  std::string file_prefix = "mpod";         // --file-prefix: one shared memory domain
  std::string runtime_dir;                  // --runtime-dir; empty: default_runtime_dir()
  std::string huge_dir;                     // --huge-dir; empty: every mounted hugetlbfs
  bool no_huge = false;                     // --no-huge: plain files under the runtime dir
  uint64_t memory_mb = 0;                   // -m/--memory; 0: 64 MB
  uint64_t base_virtaddr = 0;               // --base-virtaddr; 0: built-in default
  double wait_primary_s = 0;                // --wait-primary=SECONDS (secondary/auto)
  std::string group;                        // --group=NAME|GID: files and channel open to one group
  std::vector<std::string> log_levels;      // --log-level=[component:]level, in order
};

// Parses runtime options from argv[1..]. Parsing stops at "--" (skipped) or
// at the first argument that does not start with '-'. Returns the index in
// argv of the first application argument, like rte_eal_init's return value
// counts the arguments it consumed. Throws mpod::Error(invalid_argument)
// naming the bad option, for unknown or malformed options.
int parse_options(int argc, char** argv, Options& out);

// /var/run/mpod for root, else $XDG_RUNTIME_DIR/mpod, else /tmp/mpod-<uid>.
std::string default_runtime_dir();

// The option summary printed by --help of mpod programs.
const char* options_usage();

}  // namespace mpod
