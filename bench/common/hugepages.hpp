// Whether a benchmark run gets 2 MB hugepages. Both sides of a comparison use
// the same memory, so a run picks once and passes the answer to both.
#pragma once

#include <string>

namespace mpod_bench {

// A hugetlbfs mount of 2 MB pages if at least `pages_needed` hugepages are
// free, else "": the run then uses plain memory rather than failing half-way
// when a side cannot get its pages.
std::string pick_huge_dir(long pages_needed);

// How a report's header says where the run's memory was: "hugepages in
// <huge_dir>", or "no hugepages (plain memory)" for an empty huge_dir.
std::string memory_description(const std::string& huge_dir);

}  // namespace mpod_bench
