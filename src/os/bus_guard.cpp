// SIGBUS from damaged shared files (bus_guard in os.hpp).
//
// A shared file mapping faults with SIGBUS where its file no longer has the
// page: the file was truncated (by anyone who may write it), or it is sparse
// and its filesystem had no room for the page. Every process mapping it would
// die of it. The handler below replaces the page that faulted (the whole
// huge page for a hugetlbfs mapping) with a private zero page and lets the
// access run again: the process loses that page's sharing, as the file has
// lost its contents, and lives. A fault outside every mapping mpod made is
// handed to the disposition that was there before, so a program's own bugs
// still end it as they would have.
#include <signal.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include <atomic>
#include <cstdint>
#include <mutex>

#include "os.hpp"

namespace mpod::os {
namespace {

// Every mapping of a shared file this process holds: peers' mailboxes, the
// config, page tables, memory segments. Read by the handler: lock-free.
struct Entry {
  std::atomic<uint32_t> state{0};  // 0 free, 1 being written, 2 live
  std::atomic<uintptr_t> base{0};
  std::atomic<size_t> len{0};
  std::atomic<size_t> page{0};  // what one fault may be replaced by: the mapping's page size
};
constexpr size_t kEntries = 8192;  // a full domain's mailboxes, and every table and segment
Entry g_entries[kEntries];
std::atomic<uint64_t> g_recovered{0};
struct sigaction g_previous {};

void pass_on(int sig, siginfo_t* si, void* uc) {
  if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction) {
    g_previous.sa_sigaction(sig, si, uc);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler) {
    g_previous.sa_handler(sig);
    return;
  }
  // The default (or ignored, which the kernel overrides for a fault):
  // returning re-runs the access, which faults again and ends the process as
  // before. A SIGBUS sent by kill() re-runs nothing: raise it again.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGBUS, &dfl, nullptr);
  if (si->si_code <= 0) ::raise(sig);
}

void on_sigbus(int sig, siginfo_t* si, void* uc) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(si->si_addr);
  for (auto& e : g_entries) {
    if (e.state.load(std::memory_order_acquire) != 2) continue;
    const uintptr_t base = e.base.load(std::memory_order_relaxed);
    const size_t len = e.len.load(std::memory_order_relaxed), page = e.page.load(std::memory_order_relaxed);
    if (at < base || at - base >= len) continue;
    const uintptr_t start = at & ~uintptr_t(page - 1);
    // mmap is async-signal-safe in practice (a system call); the flags make
    // it replace exactly that page, as plain memory.
    void* p = ::mmap(reinterpret_cast<void*>(start), page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p != MAP_FAILED) {
      g_recovered.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    break;
  }
  pass_on(sig, si, uc);
}

std::once_flag g_installed;

}  // namespace

void install_bus_guard() {
  std::call_once(g_installed, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous);
  });
}

void guard_mapping(void* base, size_t len, int fd) noexcept {
  if (!base || !len) return;
  size_t page = system_page_size();
  struct statfs sf;
  if (fd >= 0 && ::fstatfs(fd, &sf) == 0 && static_cast<unsigned long>(sf.f_type) == HUGETLBFS_MAGIC)
    page = static_cast<size_t>(sf.f_bsize);
  for (auto& e : g_entries) {
    uint32_t free = 0;
    if (!e.state.compare_exchange_strong(free, 1, std::memory_order_acquire)) continue;
    e.base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_relaxed);
    e.len.store(len, std::memory_order_relaxed);
    e.page.store(page, std::memory_order_relaxed);
    e.state.store(2, std::memory_order_release);
    return;
  }
  // Full: this mapping is simply not guarded (a SIGBUS in it ends the process, as before).
}

void unguard_mapping(void* addr, size_t len) noexcept {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(addr), hi = lo + len;
  for (auto& e : g_entries) {
    if (e.state.load(std::memory_order_acquire) != 2) continue;
    const uintptr_t b = e.base.load(std::memory_order_relaxed);
    if (b >= lo && b < hi) {
      e.state.store(1, std::memory_order_relaxed);
      e.state.store(0, std::memory_order_release);
    }
  }
}

uint64_t bus_faults_recovered() noexcept { return g_recovered.load(std::memory_order_relaxed); }

}  // namespace mpod::os
