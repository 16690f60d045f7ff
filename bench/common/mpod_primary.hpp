// The benchmark driver's own mpod primary. Header-only: it needs mpod, which
// mpod_bench_common does not link (mpod-bench-client-server only runs mpod's
// programs).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "mpod/options.hpp"
#include "scratch.hpp"

namespace mpod_bench {

// Options for a primary of this run: runtime files in s.mpod_dir (removed
// with it), memory_mb MB of the hugepages in s.huge_dir, or of plain memory
// when the run has none, so that mpod runs on the same memory as DPDK's side.
inline mpod::Options primary_options(const Scratch& s, std::string file_prefix, uint64_t memory_mb) {
  mpod::Options o;
  o.proc_type = mpod::ProcType::primary;
  o.file_prefix = std::move(file_prefix);
  o.runtime_dir = s.mpod_dir;
  o.memory_mb = memory_mb;
  o.huge_dir = s.huge_dir;
  o.no_huge = s.huge_dir.empty();
  return o;
}

}  // namespace mpod_bench
