#include "memzones_impl.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

namespace {
constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// The table is the group's to write: a zone handed to the caller must lie in
// memory this process has mapped, and its name within its field.
Memzone to_memzone(const MemzoneEntry& e, const SharedMemory& memory) {
  Memzone z;
  z.name.assign(e.name, strnlen(e.name, sizeof e.name));
  if (!memory.backs(e.addr, e.len))
    throw Error(Errc::corrupt, "the memzone table is corrupt: memzone '" + z.name +
                                   "' lies outside the shared memory; stop every process of this prefix and restart "
                                   "the primary");
  z.addr = reinterpret_cast<void*>(e.addr);
  z.len = e.len;
  z.align = e.align;
  z.page_size = e.page_size;
  return z;
}
}  // namespace

void Memzones::validate_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLen)
    throw Error(Errc::invalid_argument, "memzone name '" + std::string(name) + "' must be 1 to " +
                                            std::to_string(kMaxNameLen) + " characters");
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
      throw Error(Errc::invalid_argument, "memzone name '" + std::string(name) +
                                              "' may contain only letters, digits, '_', '-' and '.'");
}

void MemzonesImpl::repair() noexcept {
  for (auto& e : table_.entries) {
    if (e.state.load(std::memory_order_relaxed) == MemzoneEntry::reserving) {
      MPOD_LOG(memzone, warning, "discarding memzone '%.31s' left half-reserved by a dead process", e.name);
      e.state.store(MemzoneEntry::free_, std::memory_order_release);
    }
  }
}

MemzoneEntry* MemzonesImpl::find_locked(std::string_view name) {
  for (auto& e : table_.entries)
    if (e.state.load(std::memory_order_acquire) == MemzoneEntry::used &&
        name == std::string_view(e.name, strnlen(e.name, sizeof e.name)))
      return &e;
  return nullptr;
}

Memzone MemzonesImpl::reserve(std::string_view name, uint64_t len, uint64_t align,
                              uint64_t page_size) {
  validate_name(name);
  if (len == 0) throw Error(Errc::invalid_argument, "memzone '" + std::string(name) + "': size must be > 0");
  if (align < 64 || (align & (align - 1)))
    throw Error(Errc::invalid_argument, "memzone '" + std::string(name) +
                                            "': alignment must be a power of two >= 64, got " +
                                            std::to_string(align));
  const auto& layout = memory_.layout();
  // Bounded before any arithmetic: past the largest list neither fits, and
  // a length or alignment near 2^64 would wrap the range checks below.
  uint64_t largest = 0;
  for (uint32_t li = 0; li < layout.n_lists; ++li)
    largest = std::max(largest, uint64_t(layout.lists[li].capacity) * layout.lists[li].seg_size);
  if (len > largest || align > largest)
    throw Error(Errc::no_memory, "cannot reserve memzone '" + std::string(name) + "' of " + std::to_string(len) +
                                     " bytes aligned to " + std::to_string(align) +
                                     ": larger than the largest memory list of the domain (" +
                                     std::to_string(largest) + " bytes); ask for less");
  SharedLockGuard guard(lock_);
  if (guard.owner_died()) repair();
  if (find_locked(name))
    throw Error(Errc::already_exists, "memzone '" + std::string(name) +
                                          "' already exists; look it up instead, or free it first");
  MemzoneEntry* slot = nullptr;
  for (auto& e : table_.entries)
    if (e.state.load(std::memory_order_relaxed) == MemzoneEntry::free_) {
      slot = &e;
      break;
    }
  if (!slot)
    throw Error(Errc::no_memory, "the memzone table is full (" + std::to_string(MemzoneTable::kEntries) +
                                     " entries); free memzones you no longer need");
  memory_.sync();

  bool page_size_known = page_size == 0;
  for (uint32_t li = 0; li < layout.n_lists; ++li) {
    const auto& l = layout.lists[li];
    if (page_size && l.page_size != page_size) continue;
    page_size_known = true;
    // First fit among the gaps between this list's memzones, then past the last one.
    // The table is the group's to write: an entry outside the list cannot be
    // a memzone of it, and must not steer where the next one goes.
    const uint64_t list_end = l.base_va + uint64_t(l.capacity) * l.seg_size;
    std::vector<std::pair<uint64_t, uint64_t>> taken;
    for (auto& e : table_.entries)
      if (e.state.load(std::memory_order_relaxed) == MemzoneEntry::used && e.list == li && e.addr >= l.base_va &&
          e.addr <= list_end && e.len <= list_end - e.addr)
        taken.emplace_back(e.addr, e.addr + e.len);
    std::sort(taken.begin(), taken.end());
    uint64_t cursor = l.base_va, addr = 0;
    const uint64_t backed_end = l.base_va + memory_.backed_bytes(li);
    for (auto& [s, e] : taken) {
      uint64_t a = align_up(cursor, align);
      if (a + len <= s) {
        addr = a;
        break;
      }
      cursor = std::max(cursor, e);
    }
    if (!addr) {
      uint64_t a = align_up(cursor, align);
      if (a + len > list_end) continue;
      if (a + len > backed_end) {
        // Grow under the memory lock; another list may still fit if this fails.
        try {
          SharedLockGuard mem_guard(*memory_.lock());
          memory_.grow(li, a + len - l.base_va);
        } catch (const Error& err) {
          if (err.code() != Errc::no_memory) throw;
          MPOD_LOG(memzone, info, "memzone '%.*s': %s", static_cast<int>(name.size()), name.data(), err.what());
          continue;
        }
      }
      addr = a;
    }
    if (!memory_.backs(addr, len))
      throw Error(Errc::corrupt, "cannot reserve memzone '" + std::string(name) +
                                     "': the memzone table is corrupt (the free range found lies outside the shared "
                                     "memory); stop every process of this prefix and restart the primary");
    slot->state.store(MemzoneEntry::reserving, std::memory_order_relaxed);
    std::memset(slot->name, 0, sizeof slot->name);
    std::memcpy(slot->name, name.data(), name.size());
    slot->addr = addr;
    slot->len = len;
    slot->align = align;
    slot->page_size = l.page_size;
    slot->list = li;
    std::memcpy(slot->creator, self_.bytes.data(), 16);
    std::memset(reinterpret_cast<void*>(addr), 0, len);
    slot->state.store(MemzoneEntry::used, std::memory_order_release);
    MPOD_LOG(memzone, debug, "reserved '%.*s': %llu bytes at %p", static_cast<int>(name.size()),
             name.data(), static_cast<unsigned long long>(len), reinterpret_cast<void*>(addr));
    return to_memzone(*slot, memory_);
  }
  if (!page_size_known)
    throw Error(Errc::invalid_argument, "memzone '" + std::string(name) + "': no memory of page size " +
                                            std::to_string(page_size) + " bytes is set up");
  throw Error(Errc::no_memory, "cannot reserve memzone '" + std::string(name) + "' of " +
                                   std::to_string(len) +
                                   " bytes: no free range is large enough and memory cannot grow; "
                                   "free memzones, or start the primary with a larger -m");
}

std::optional<Memzone> MemzonesImpl::lookup(std::string_view name) {
  SharedLockGuard guard(lock_);
  if (guard.owner_died()) repair();
  MemzoneEntry* e = find_locked(name);
  if (!e) return std::nullopt;
  memory_.sync();  // the memzone may lie in segments another process added
  return to_memzone(*e, memory_);
}

void MemzonesImpl::free(std::string_view name) {
  SharedLockGuard guard(lock_);
  if (guard.owner_died()) repair();
  MemzoneEntry* e = find_locked(name);
  if (!e) throw Error(Errc::not_found, "cannot free memzone '" + std::string(name) + "': no such memzone");
  e->state.store(MemzoneEntry::free_, std::memory_order_release);
}

std::vector<Memzone> MemzonesImpl::list() {
  std::vector<Memzone> out;
  {
    SharedLockGuard guard(lock_);
    if (guard.owner_died()) repair();
    for (auto& e : table_.entries)
      if (e.state.load(std::memory_order_acquire) == MemzoneEntry::used) out.push_back(to_memzone(e, memory_));
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.addr < b.addr; });
  return out;
}

uint64_t MemzonesImpl::used_bytes(uint32_t li) {
  uint64_t sum = 0;
  SharedLockGuard guard(lock_);
  for (auto& e : table_.entries)
    if (e.state.load(std::memory_order_acquire) == MemzoneEntry::used && e.list == li) sum += e.len;
  return sum;
}

}  // namespace mpod
