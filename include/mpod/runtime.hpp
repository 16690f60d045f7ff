// mpod::Runtime — start-up and shutdown of a primary or secondary process.
//
// One Runtime may be live per process. A primary creates the shared domain
// for its --file-prefix: the config, memseg lists and page files, all mapped
// at one virtual range. A secondary maps the same pages at the same addresses.
// Neither ever keys anything on a PID, so processes in different PID
// namespaces (pods) can share one runtime directory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mpod/channel.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "mpod/memzone.hpp"
#include "mpod/options.hpp"
#include "mpod/process.hpp"

namespace mpod {

namespace detail {
class ClaimOwners;  // src/runtime/claim_owners.hpp
}

// Memory of one page size, as `mpod info` reports it.
struct MemoryUsage {
  uint64_t page_size = 0;
  bool hugepages = false;
  uint64_t total_bytes = 0;  // pages allocated
  uint64_t used_bytes = 0;   // covered by memzones
  std::string backing;       // file holding the pages
};

class Runtime {
 public:
  // Starts from parsed options. `auto` becomes primary if no primary holds
  // the prefix, else secondary; it never makes a second primary. A secondary
  // waits up to wait_primary_s for a primary. Throws mpod::Error; on failure
  // nothing that existed before is changed and nothing is left behind.
  static std::unique_ptr<Runtime> start(const Options& options);
  // Parses argv like rte_eal_init, then starts. *first_app_arg receives the
  // index of the first application argument (may be null).
  static std::unique_ptr<Runtime> start(int argc, char** argv, int* first_app_arg);

  // Shuts down: releases everything this process owns. A primary with live
  // secondaries leaves the shared memory in place for them.
  virtual ~Runtime() = default;

  virtual Role role() const noexcept = 0;
  virtual const ProcessInfo& self() const noexcept = 0;
  virtual const Options& options() const noexcept = 0;
  // <runtime-dir>/<prefix>
  virtual const std::string& domain_dir() const noexcept = 0;

  // Every registered process, with liveness tested now.
  virtual std::vector<ProcessInfo> processes() const = 0;
  virtual std::vector<MemoryUsage> memory() const = 0;
  virtual Memzones& memzones() noexcept = 0;
  // The multi-process channel; bound at start-up, closed at shutdown.
  virtual Channel& channel() noexcept = 0;

  // Base and length of the shared virtual range.
  virtual void* base_addr() const noexcept = 0;
  virtual uint64_t va_len() const noexcept = 0;

  // Removes registrations (and per-process files) of processes that died
  // without shutting down. Returns how many were removed.
  virtual size_t reap_dead() = 0;

  // This process's tag for the claims it makes on rings, and the liveness
  // test of other processes' tags (rings and mempools take it when created
  // or looked up; see docs/data-plane.md).
  virtual const detail::ClaimOwners& claim_owners() const noexcept = 0;

 protected:
  Runtime() = default;
};

}  // namespace mpod
