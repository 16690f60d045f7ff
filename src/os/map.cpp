// Memory mappings.
#include <sys/mman.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fault.hpp"
#include "mpod/log.hpp"
#include "os.hpp"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace mpod::os {
namespace {
std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%" PRIxPTR, reinterpret_cast<uintptr_t>(p));
  return b;
}
}  // namespace

std::string describe_mapping(const void* addr, size_t len) {
  auto lo = reinterpret_cast<uintptr_t>(addr), hi = lo + len;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    uintptr_t s = 0, e = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &s, &e) != 2) continue;
    if (s < hi && e > lo) {
      // "start-end perms offset dev inode path": keep range, perms and path.
      std::istringstream in(line);
      std::string range, perms, off, dev, inode, path;
      in >> range >> perms >> off >> dev >> inode;
      std::getline(in, path);
      size_t first = path.find_first_not_of(' ');
      path = first == std::string::npos ? "[anonymous]" : path.substr(first);
      return range + " " + perms + " " + path;
    }
  }
  return "";
}

void* reserve_range(void* addr, size_t len, bool exact) {
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (exact) flags |= MAP_FIXED_NOREPLACE;
  int err = detail::take_fault(Op::map);
  void* p = err ? MAP_FAILED : ::mmap(addr, len, PROT_NONE, flags, -1, 0);
  if (p == MAP_FAILED && !err) err = errno;
  if (p != MAP_FAILED && exact && p != addr) {
    // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat it as a hint.
    ::munmap(p, len);
    p = MAP_FAILED;
    err = EEXIST;
  }
  if (p == MAP_FAILED) {
    MPOD_LOG(os, debug, "reserve %zu bytes at %s failed: %s", len, hex(addr).c_str(),
             std::strerror(err));
    if (exact && err == EEXIST) {
      std::string who = describe_mapping(addr, len);
      throw Error(Errc::address_conflict,
                  "cannot map shared memory at " + hex(addr) + "-" +
                      hex(static_cast<char*>(addr) + len) + ": this process already has " +
                      (who.empty() ? std::string("a mapping") : "[" + who + "]") +
                      " there; restart the primary with --base-virtaddr set to a range that is "
                      "free in every process (e.g. a higher address)",
                  "", err);
    }
    throw Error(Errc::no_memory, "cannot reserve " + std::to_string(len) +
                                     " bytes of address space (lower -m)", "", err);
  }
  MPOD_LOG(os, debug, "reserved %zu bytes at %s", len, hex(p).c_str());
  return p;
}

void map_shared_fixed(void* addr, size_t len, int fd, uint64_t offset, const std::string& path) {
  int err = detail::take_fault(Op::map);
  void* p = err ? MAP_FAILED
                : ::mmap(addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
                         static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    if (!err) err = errno;
    MPOD_LOG(os, debug, "map %s (%zu bytes at %s) failed: %s", path.c_str(), len,
             hex(addr).c_str(), std::strerror(err));
    throw Error(err == ENOMEM ? Errc::no_memory : Errc::system,
                "cannot map " + path + " at " + hex(addr), path, err);
  }
  guard_mapping(addr, len, fd);
  MPOD_LOG(os, debug, "mapped %s +%llu (%zu bytes) at %s", path.c_str(),
           static_cast<unsigned long long>(offset), len, hex(addr).c_str());
}

void* map_shared(size_t len, int fd, const std::string& path) {
  int err = detail::take_fault(Op::map);
  void* p = err ? MAP_FAILED : ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    if (!err) err = errno;
    MPOD_LOG(os, debug, "map %s failed: %s", path.c_str(), std::strerror(err));
    throw Error(Errc::system, "cannot map " + path, path, err);
  }
  guard_mapping(p, len, fd);
  MPOD_LOG(os, debug, "mapped %s (%zu bytes) at %s", path.c_str(), len, hex(p).c_str());
  return p;
}

void advise_random(void* addr, size_t len) noexcept {
  if (::madvise(addr, len, MADV_RANDOM) != 0)
    MPOD_LOG(os, debug, "madvise(MADV_RANDOM) of %zu bytes at %s failed: %s", len, hex(addr).c_str(), std::strerror(errno));
}

void unmap_to_reserved(void* addr, size_t len) {
  // Replacing the pages with a fresh no-access mapping keeps the range ours.
  unguard_mapping(addr, len);
  ::mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  MPOD_LOG(os, debug, "unmapped %zu bytes at %s", len, hex(addr).c_str());
}

void unmap(void* addr, size_t len) {
  unguard_mapping(addr, len);
  if (addr && len) ::munmap(addr, len);
  MPOD_LOG(os, debug, "unmapped %zu bytes at %s", len, hex(addr).c_str());
}

}  // namespace mpod::os
