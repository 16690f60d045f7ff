// Where one benchmark run lives: a fresh runtime dir for mpod, the hugetlbfs
// mount both sides use, and the --file-prefixes its processes name files by.
// Children killed at a timeout or on ^C leave runtime dirs and hugepage files
// behind; hugepage files hold their pages until someone removes them, so the
// destructor removes everything the run may have left.
#pragma once

#include <string>
#include <vector>

namespace mpod_bench {

// Removes what processes run with --file-prefix `prefix` may leave when
// killed: DPDK's runtime dir (/var/run/dpdk/<prefix> for root, else under
// $XDG_RUNTIME_DIR or /tmp) and page files <prefix>map_N in `huge_dir` (DPDK
// and mpod both name them so; empty: none). For once no process of that
// prefix runs any more: a live one would go on using what this removes.
// Errors are ignored (this runs on the way out of errors too).
void remove_run_files(const std::string& prefix, const std::string& huge_dir);

// For drivers that name their prefixes themselves: remove_run_files() when
// it goes out of scope. Declare it before the processes it cleans up after,
// so they are stopped first.
struct RunFilesRemover {
  std::string prefix, huge_dir;
  ~RunFilesRemover() { remove_run_files(prefix, huge_dir); }
};

class Scratch {
 public:
  // Sets bin to this program's directory, creates mpod_dir as a fresh
  // /tmp/<name>-XXXXXX, sets huge_dir to pick_huge_dir(hugepages_needed), and
  // have_dpdk to whether bin/<dpdk_program> was built. Throws if the
  // directory cannot be created.
  Scratch(const std::string& name, long hugepages_needed, const std::string& dpdk_program);
  // Removes mpod_dir and remove_files() of every tracked prefix; errors are
  // ignored (this runs on the way out of errors too).
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // Adds a --file-prefix (DPDK's or mpod's) whose files the destructor
  // removes, and returns it.
  std::string track_prefix(std::string prefix);

  // remove_run_files(prefix, huge_dir).
  void remove_files(const std::string& prefix) const { remove_run_files(prefix, huge_dir); }

  // The EAL options every DPDK process of the run gets: `prefix` as its
  // --file-prefix, no PCI scan and no telemetry socket (a benchmark uses
  // neither), only EAL's errors logged (its notices would bury the results),
  // and huge_dir (--no-huge when the run has no hugepages).
  std::vector<std::string> dpdk_eal_options(const std::string& prefix) const;

  std::string bin;          // directory of this program and its helpers
  std::string mpod_dir;     // mpod's runtime dir (a fresh temporary one)
  std::string huge_dir;     // hugetlbfs mount both sides use; empty: no hugepages
  bool have_dpdk = false;   // the DPDK side was built (libdpdk-dev found)
  std::string dpdk_prefix;  // DPDK's --file-prefix when one serves the whole run (set with track_prefix)

 private:
  std::vector<std::string> prefixes_;
};

}  // namespace mpod_bench
