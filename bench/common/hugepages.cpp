#include "hugepages.hpp"

#include <fstream>
#include <sstream>

namespace mpod_bench {

std::string pick_huge_dir(long pages_needed) {
  std::ifstream meminfo("/proc/meminfo");
  long free_pages = 0;
  for (std::string key; meminfo >> key;) {
    if (key == "HugePages_Free:") meminfo >> free_pages;
    meminfo.ignore(256, '\n');
  }
  if (free_pages < pages_needed) return "";
  std::ifstream mounts("/proc/mounts");
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream f(line);
    std::string dev, dir, type, opts;
    f >> dev >> dir >> type >> opts;
    if (type == "hugetlbfs" && (opts.find("pagesize=2M") != std::string::npos || opts.find("pagesize") == std::string::npos))
      return dir;
  }
  return "";
}

std::string memory_description(const std::string& huge_dir) {
  return huge_dir.empty() ? "no hugepages (plain memory)" : "hugepages in " + huge_dir;
}

}  // namespace mpod_bench
