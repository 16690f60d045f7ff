// Identity facts, time, and hugetlbfs discovery.
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "os.hpp"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

namespace mpod::os {

void random_bytes(void* out, size_t len) {
  auto p = static_cast<unsigned char*>(out);
  while (len > 0) {
    ssize_t n = ::getrandom(p, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(Errc::system, "getrandom failed; cannot create a process id", "", errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
}

int32_t current_pid() { return static_cast<int32_t>(::getpid()); }

uint64_t pid_namespace_inode() {
  struct stat st;
  if (::stat("/proc/self/ns/pid", &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

std::string host_name() {
  struct utsname u;
  if (::uname(&u) != 0) return "?";
  return u.nodename;
}

uint64_t realtime_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t monotonic_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void sleep_ns(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uid_t effective_uid() { return ::geteuid(); }

size_t system_page_size() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }

uint64_t hugetlbfs_page_size(const std::string& dir) {
  struct statfs sf;
  if (::statfs(dir.c_str(), &sf) != 0) return 0;
  if (static_cast<unsigned long>(sf.f_type) != HUGETLBFS_MAGIC) return 0;
  return static_cast<uint64_t>(sf.f_bsize);
}

namespace {
uint64_t read_counter(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return v;
}
}  // namespace

std::vector<HugeMount> hugetlbfs_mounts() {
  std::vector<HugeMount> out;
  std::ifstream mounts("/proc/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream in(line);
    std::string dev, path, type;
    in >> dev >> path >> type;
    if (type != "hugetlbfs") continue;
    HugeMount m;
    m.path = path;
    m.page_size = hugetlbfs_page_size(path);
    if (m.page_size == 0) continue;
    bool dup = false;
    for (auto& o : out) dup |= o.path == m.path;
    if (dup) continue;
    std::string sys = "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(m.page_size / 1024) + "kB/";
    m.free_pages = read_counter(sys + "free_hugepages");
    m.total_pages = read_counter(sys + "nr_hugepages");
    out.push_back(m);
  }
  return out;
}

}  // namespace mpod::os
