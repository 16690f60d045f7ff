#include "shared_memory.hpp"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "../os/os.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

namespace {
// The default start of the shared range: far from where the kernel puts
// libraries, heaps and stacks, so secondaries find it free. Sanitizers own
// parts of the address space, so their builds use a range they leave to us.
#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kDefaultBase = 0x4000000000ull;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr uint64_t kDefaultBase = 0x4000000000ull;
#else
constexpr uint64_t kDefaultBase = 0x200000000000ull;
#endif
#else
constexpr uint64_t kDefaultBase = 0x200000000000ull;
#endif

constexpr uint64_t kPlainSegSize = 2ull << 20;    // plain-file memory is tracked in 2 MiB segments
constexpr uint64_t kMinListCapacity = 4ull << 30;  // virtual space per list, at least

constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::string size_name(uint64_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return std::to_string(bytes >> 30) + " GB";
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + " MB";
  return std::to_string(bytes >> 10) + " kB";
}

void copy_name(char* dst, size_t cap, const std::string& s) {
  if (s.size() >= cap) throw Error(Errc::invalid_argument, "name too long for the shared config: " + s);
  std::memset(dst, 0, cap);
  std::memcpy(dst, s.data(), s.size());
}

struct Source {
  os::Dir dir;
  uint64_t page_size, seg_size;
  bool hugepages;
  uint64_t free_pages;
};

std::vector<Source> page_sources(const MemoryParams& p) {
  std::vector<Source> out;
  if (p.no_huge) {
    os::Dir dir = p.domain.make_subdir("pages", 0700, os::DirRule::owned_by(os::effective_uid()));
    out.push_back({dir, os::system_page_size(), kPlainSegSize, false, ~0ull});
    return out;
  }
  auto mounts = os::hugetlbfs_mounts();
  if (!p.huge_dir.empty()) {
    uint64_t ps = os::hugetlbfs_page_size(p.huge_dir);
    if (ps == 0)
      throw Error(Errc::not_found,
                  "--huge-dir " + p.huge_dir +
                      " is not a hugetlbfs mount; mount one (mount -t hugetlbfs nodev " + p.huge_dir +
                      ") or run with --no-huge",
                  p.huge_dir);
    os::check_writable_dir(p.huge_dir, "--huge-dir");
    uint64_t free_pages = 0;
    for (auto& m : mounts)
      if (m.page_size == ps) free_pages = m.free_pages;
    out.push_back({os::Dir::open(p.huge_dir, os::DirRule::volume()), ps, ps, true, free_pages});
    return out;
  }
  for (auto& m : mounts) {
    bool seen = false;
    for (auto& s : out) seen |= s.page_size == m.page_size;
    if (!seen) out.push_back({os::Dir::open(m.path, os::DirRule::volume()), m.page_size, m.page_size, true, m.free_pages});
  }
  if (out.empty())
    throw Error(Errc::not_found,
                "no hugetlbfs is mounted; set up hugepages (echo 256 > /proc/sys/vm/nr_hugepages; "
                "mount -t hugetlbfs nodev /dev/hugepages) or run with --no-huge");
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.page_size < b.page_size; });
  return out;
}

// Which source holds the initial memory: the largest page size that divides
// it evenly and has the pages free, else the smallest that has enough.
size_t choose_initial(const std::vector<Source>& src, uint64_t bytes) {
  for (size_t i = src.size(); i-- > 0;)
    if (bytes % src[i].page_size == 0 && src[i].free_pages >= bytes / src[i].page_size) return i;
  for (size_t i = 0; i < src.size(); ++i)
    if (src[i].free_pages >= align_up(bytes, src[i].page_size) / src[i].page_size) return i;
  std::string have;
  for (auto& s : src)
    have += (have.empty() ? "" : ", ") + std::to_string(s.free_pages) + " free pages of " +
            size_name(s.page_size) + " in " + s.dir.path();
  throw Error(Errc::no_memory,
              "not enough free hugepages for -m " + std::to_string(bytes >> 20) + " (" + have +
                  "); raise /proc/sys/vm/nr_hugepages, lower -m, or run with --no-huge");
}

// Every process mapping a backing file holds a shared lock on it, so a file
// in use is never removed or reused, even by a domain in another runtime
// directory that happens to share the prefix (hugetlbfs names are per mount).
// The primary creates it anew (a stale one removed first); a secondary opens
// only a regular file of the domain's owner.
os::Fd open_backing(const os::Dir& dir, const std::string& name, bool create, uid_t owner) {
  const std::string path = dir.path_of(name);
  os::Fd fd;
  if (create) {
    if (dir.remove_unused(name) != os::Dir::Removal::in_use) fd = dir.try_create(name, O_RDWR, 0600);
  } else {
    fd = dir.open(name, O_RDWR, owner);
  }
  if (!fd || !os::try_lock(fd.get(), create ? os::LockKind::exclusive : os::LockKind::shared, path))
    throw Error(Errc::busy,
                create ? "page file " + path +
                             " is in use by processes of another mpod domain with the same prefix; "
                             "give this domain its own --file-prefix"
                       : "page file " + path + " is being recreated by a new primary; start again",
                path);
  os::flock_shared(fd.get(), path);
  return fd;
}

// A name the primary wrote into the config: one plain file name, nothing that walks elsewhere.
bool is_plain_name(const char* s, size_t cap) {
  const size_t n = strnlen(s, cap);
  if (n == 0 || n == cap) return false;
  const std::string_view v(s, n);
  return v != "." && v != ".." && v.find('/') == std::string_view::npos;
}

bool is_power_of_two(uint64_t v) { return v && !(v & (v - 1)); }
}  // namespace

std::string layout_problem(const MemoryLayout& layout, uint64_t base, uint64_t len) {
  const uint64_t page = os::system_page_size();
  // The canonical user half of the address space, less the first page.
  constexpr uint64_t kUserTop = 0x800000000000ull;
  if (base < page || len == 0 || base % page || len % page || base > kUserTop || len > kUserTop - base)
    return "the shared range is outside user space or unaligned";
  if (layout.n_lists == 0 || layout.n_lists > MemoryLayout::kMaxLists)
    return "it has " + std::to_string(layout.n_lists) + " memseg lists";
  uint64_t cursor = base;
  for (uint32_t i = 0; i < layout.n_lists; ++i) {
    const auto& l = layout.lists[i];
    const std::string which = "memseg list " + std::to_string(i);
    if (!is_power_of_two(l.page_size) || l.page_size < page || l.page_size > (1ull << 30))
      return which + " has page size " + std::to_string(l.page_size);
    if (!is_power_of_two(l.seg_size) || l.seg_size < l.page_size || l.seg_size > (1ull << 30))
      return which + " has segment size " + std::to_string(l.seg_size);
    if (l.capacity == 0 || l.base_va % l.page_size || l.base_va < cursor)
      return which + " starts out of order or unaligned";
    const uint64_t bytes = uint64_t(l.capacity) * l.seg_size;
    if (l.base_va - base > len || bytes > len - (l.base_va - base))
      return which + " does not fit the shared range";
    cursor = l.base_va + bytes;
    if (!is_plain_name(l.fbarray_name, sizeof l.fbarray_name) ||
        !std::string_view(l.fbarray_name).starts_with("fbarray_memseg-"))
      return which + " has a bad fbarray name";
    if (!is_plain_name(l.backing_name, sizeof l.backing_name)) return which + " has a bad backing file name";
    if (strnlen(l.backing_dir, sizeof l.backing_dir) == sizeof l.backing_dir) return which + " has a bad directory";
    if (l.hugepages > 1) return which + " has a bad page kind";
  }
  return "";
}

struct SharedMemory::List {
  FbArray shared;  // the primary's page table
  FbArray local;   // which segments this process has mapped
  os::Dir backing_dir;
  os::Fd backing;
  std::string backing_path;  // for messages
};

os::Dir SharedMemory::backing_dir(const MemsegListLayout& l) const {
  if (!l.hugepages) {
    if (auto d = params_.domain.try_open_subdir("pages", os::DirRule::owned_by(params_.domain.owner())))
      return std::move(*d);
    throw Error(Errc::not_found, "the page directory " + params_.domain.path_of("pages") +
                                     " is missing; restart the primary", params_.domain.path_of("pages"));
  }
  if (!params_.huge_dir.empty()) {
    if (os::hugetlbfs_page_size(params_.huge_dir) != l.page_size)
      throw Error(Errc::invalid_argument,
                  "--huge-dir " + params_.huge_dir + " is not a hugetlbfs of " + size_name(l.page_size) +
                      " pages, which the primary's memory uses; pass a mount of that page size",
                  params_.huge_dir);
    return os::Dir::open(params_.huge_dir, os::DirRule::volume());
  }
  // The primary's directory is only a hint to choose among this process's
  // own mounts of that page size (a pod may mount it elsewhere).
  std::string chosen;
  for (auto& m : os::hugetlbfs_mounts())
    if (m.page_size == l.page_size && (chosen.empty() || m.path == l.backing_dir)) chosen = m.path;
  if (chosen.empty())
    throw Error(Errc::not_found,
                "no hugetlbfs of " + size_name(l.page_size) +
                    " pages is mounted in this process's mount namespace, and the primary's memory uses them; "
                    "mount the same hugetlbfs (in Kubernetes: the same hostPath volume) or pass --huge-dir");
  return os::Dir::open(chosen, os::DirRule::volume());
}

std::unique_ptr<SharedMemory> SharedMemory::create(const MemoryParams& p, MemoryLayout& layout,
                                                   uint64_t* base_out, uint64_t* len_out) {
  std::unique_ptr<SharedMemory> m(new SharedMemory());
  m->params_ = p;
  m->layout_ = &layout;
  m->primary_ = true;
  // Planned in this process's own copy and only published to the shared
  // config: the primary never reads back a name or an address the group could have written.
  m->own_layout_ = std::make_unique<MemoryLayout>();
  auto sources = page_sources(p);
  uint64_t initial = p.initial_bytes;
  size_t first = choose_initial(sources, initial);
  if (sources.size() > MemoryLayout::kMaxLists) sources.resize(MemoryLayout::kMaxLists);

  // Lay the lists out one after another, each aligned to its page size.
  const uint64_t base = p.base_va ? p.base_va : kDefaultBase;
  uint64_t cursor = base;
  MemoryLayout& own = *m->own_layout_;
  own.n_lists = static_cast<uint32_t>(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    auto& s = sources[i];
    auto& l = own.lists[i];
    uint64_t cap_bytes = align_up(std::max(initial, kMinListCapacity), s.seg_size);
    cursor = align_up(cursor, s.page_size);
    l.page_size = s.page_size;
    l.seg_size = s.seg_size;
    l.base_va = cursor;
    l.capacity = static_cast<uint32_t>(cap_bytes / s.seg_size);
    l.hugepages = s.hugepages;
    copy_name(l.fbarray_name, sizeof l.fbarray_name,
              "fbarray_memseg-" + std::to_string(s.page_size >> 10) + "k-0-" + std::to_string(i));
    copy_name(l.backing_name, sizeof l.backing_name,
              (s.hugepages ? p.file_prefix : std::string()) + "map_" + std::to_string(i));
    copy_name(l.backing_dir, sizeof l.backing_dir, s.dir.path());
    cursor += cap_bytes;
  }
  m->len_ = cursor - base;
  m->base_ = os::reserve_range(reinterpret_cast<void*>(base), m->len_, true);
  *base_out = base;
  *len_out = m->len_;

  if (std::string why = layout_problem(own, base, m->len_); !why.empty())
    throw Error(Errc::invalid_argument, "cannot lay out the shared memory (" + why + "); check --base-virtaddr and -m");
  layout.n_lists = own.n_lists;
  std::memcpy(static_cast<void*>(layout.lists), static_cast<const void*>(own.lists), sizeof own.lists);
  try {
    for (uint32_t i = 0; i < own.n_lists; ++i) {
      const auto& l = own.lists[i];
      auto list = std::make_unique<List>();
      list->shared = FbArray::create(p.domain, l.fbarray_name, l.capacity, sizeof(Memseg), p.self);
      list->local = FbArray::create(p.domain, std::string(l.fbarray_name) + "_" + p.self.hex(), l.capacity,
                                    sizeof(uint64_t), p.self);
      list->backing_dir = sources[i].dir;
      list->backing_path = list->backing_dir.path_of(l.backing_name);
      list->backing = open_backing(list->backing_dir, l.backing_name, true, os::effective_uid());
      os::truncate_file(list->backing.get(), uint64_t(l.capacity) * l.seg_size, list->backing_path);
      os::try_lock(list->backing.get(), os::LockKind::shared, list->backing_path);  // downgrade
      m->lists_.push_back(std::move(list));
    }
    m->grow(static_cast<uint32_t>(first), initial);
  } catch (...) {
    m->remove_files();
    throw;
  }
  return m;
}

std::unique_ptr<SharedMemory> SharedMemory::attach(const MemoryParams& p, MemoryLayout& layout,
                                                   uint64_t base, uint64_t len) {
  std::unique_ptr<SharedMemory> m(new SharedMemory());
  m->params_ = p;
  m->layout_ = &layout;
  // The layout is the group's to write: it is read once, checked, and used
  // from this process's copy from here on.
  m->own_layout_ = std::make_unique<MemoryLayout>();
  std::memcpy(static_cast<void*>(m->own_layout_.get()), static_cast<const void*>(&layout), sizeof layout);
  if (std::string why = layout_problem(*m->own_layout_, base, len); !why.empty())
    throw Error(Errc::corrupt,
                "the memory layout in " + p.domain.path_of("config") + " is corrupt (" + why +
                    "); stop every process of prefix '" + p.file_prefix + "' and restart the primary",
                p.domain.path_of("config"));
  const MemoryLayout& own = *m->own_layout_;
  m->len_ = len;
  m->base_ = os::reserve_range(reinterpret_cast<void*>(base), len, true);
  const uid_t owner = p.domain.owner();
  for (uint32_t i = 0; i < own.n_lists; ++i) {
    auto& l = own.lists[i];
    auto list = std::make_unique<List>();
    list->shared = FbArray::attach(p.domain, l.fbarray_name, owner);
    if (list->shared.len() != l.capacity || list->shared.elt_size() != sizeof(Memseg))
      throw Error(Errc::corrupt,
                  "fbarray " + list->shared.path() + " does not match the config; restart the primary",
                  list->shared.path());
    // Named by our id, never our PID: two pods' PID 1 cannot collide here.
    list->local = FbArray::create(p.domain, std::string(l.fbarray_name) + "_" + p.self.hex(), l.capacity,
                                  sizeof(uint64_t), p.self);
    list->backing_dir = m->backing_dir(l);
    list->backing_path = list->backing_dir.path_of(l.backing_name);
    list->backing = open_backing(list->backing_dir, l.backing_name, false, owner);
    m->lists_.push_back(std::move(list));
  }
  m->sync();
  return m;
}

SharedMemory::~SharedMemory() {
  if (base_) os::unmap(base_, len_);
  for (auto& l : lists_) {
    try {
      l->local.destroy();
    } catch (const Error& e) {
      MPOD_LOG(memory, warning, "%s", e.what());
    }
  }
}

namespace {
std::mutex map_mutex;  // orders sync() and grow() mapping within this process
}

void SharedMemory::map_list_segments(uint32_t i) {
  auto& list = *lists_[i];
  const auto& l = layout(i);
  uint32_t idx = 0;
  while (auto k = list.local.find_next_free(idx)) {
    uint32_t run = list.shared.run_length_used(*k);
    if (run == 0) {
      auto next = list.shared.find_next_used(*k);
      if (!next) break;
      idx = *next;
      continue;
    }
    run = std::min(run, list.local.run_length_free(*k));
    // The page table is the group's to write: each segment must be exactly
    // where the primary puts segment j, or nothing of it is mapped.
    uint64_t seg[kMaxMapRun][2] = {};
    run = std::min<uint32_t>(run, kMaxMapRun);
    for (uint32_t j = 0; j < run; ++j) {
      const Memseg ms = *list.shared.at<Memseg>(*k + j);
      const uint64_t at = uint64_t(*k + j) * l.seg_size;
      if (ms.addr != l.base_va + at || ms.len != l.seg_size || ms.file_offset != at || ms.page_size != l.page_size)
        throw Error(Errc::corrupt,
                    "fbarray " + list.shared.path() + " is corrupt: segment " + std::to_string(*k + j) +
                        " is not where the memory layout puts it (address " + std::to_string(ms.addr) + ", offset " +
                        std::to_string(ms.file_offset) + "); nothing of it was mapped. Stop every process of "
                        "this prefix and restart the primary",
                    list.shared.path());
      seg[j][0] = ms.addr;
      seg[j][1] = ms.file_offset;
    }
    const uint64_t bytes = uint64_t(run) * l.seg_size, start = reinterpret_cast<uint64_t>(base_);
    if (seg[0][0] < start || seg[0][0] - start > len_ || bytes > len_ - (seg[0][0] - start))
      throw Error(Errc::corrupt, "segment " + std::to_string(*k) + " of " + list.shared.path() +
                                     " lies outside this process's shared range; restart the primary",
                  list.shared.path());
    os::map_shared_fixed(reinterpret_cast<void*>(seg[0][0]), bytes, list.backing.get(), seg[0][1], list.backing_path);
    for (uint32_t j = 0; j < run; ++j) {
      *list.local.at<uint64_t>(*k + j) = seg[j][0];
      list.local.set_used(*k + j);
    }
    idx = *k + run;
  }
}

void SharedMemory::sync() {
  uint64_t g = layout_->generation.load(std::memory_order_acquire);
  std::lock_guard guard(map_mutex);
  if (g == seen_generation_) return;
  for (uint32_t i = 0; i < lists_.size(); ++i) map_list_segments(i);
  seen_generation_ = g;
}

void SharedMemory::grow(uint32_t i, uint64_t bytes) {
  auto& list = *lists_[i];
  const auto& l = layout(i);
  uint64_t needed = align_up(bytes, l.seg_size) / l.seg_size;
  if (needed > l.capacity)
    throw Error(Errc::no_memory,
                "memory of page size " + size_name(l.page_size) + " is full: " +
                    std::to_string(bytes >> 20) + " MB needed, the list holds " +
                    std::to_string((uint64_t(l.capacity) * l.seg_size) >> 20) +
                    " MB; start the primary with a larger -m");
  uint32_t have = list.shared.count_used();  // segments are a prefix: never freed while the domain lives
  if (needed > have) {
    os::allocate_file(list.backing.get(), uint64_t(have) * l.seg_size,
                      (needed - have) * l.seg_size, list.backing_path);
    for (uint32_t j = have; j < needed; ++j) {
      auto* ms = list.shared.at<Memseg>(j);
      ms->addr = l.base_va + uint64_t(j) * l.seg_size;
      ms->len = l.seg_size;
      ms->file_offset = uint64_t(j) * l.seg_size;
      ms->page_size = l.page_size;
      list.shared.set_used(j);  // release: the Memseg is visible before the bit
    }
    layout_->generation.fetch_add(1, std::memory_order_release);
    MPOD_LOG(memory, info, "grew %s list %u to %" PRIu64 " MB", size_name(l.page_size).c_str(), i,
             (needed * l.seg_size) >> 20);
  }
  sync();
}

uint64_t SharedMemory::backed_bytes(uint32_t i) const {
  return uint64_t(std::min(lists_[i]->shared.count_used(), layout(i).capacity)) * layout(i).seg_size;
}

bool SharedMemory::backs(uint64_t addr, uint64_t len) const noexcept {
  for (uint32_t i = 0; i < lists_.size(); ++i) {
    const uint64_t base = layout(i).base_va, backed = backed_bytes(i);
    if (addr >= base && addr - base <= backed && len <= backed - (addr - base)) return true;
  }
  return false;
}

std::vector<MemoryUsage> SharedMemory::usage() const {
  std::vector<MemoryUsage> out;
  for (uint32_t i = 0; i < lists_.size(); ++i) {
    MemoryUsage u;
    u.page_size = layout(i).page_size;
    u.hugepages = layout(i).hugepages;
    u.total_bytes = backed_bytes(i);
    u.backing = lists_[i]->backing_path;
    out.push_back(u);
  }
  return out;
}

void SharedMemory::remove_files() noexcept {
  for (uint32_t i = 0; i < lists_.size(); ++i) {
    auto& l = *lists_[i];
    try {
      l.local.destroy();
      if (l.shared.valid()) l.shared.destroy();
      l.backing.reset();  // our lock goes with it
      if (l.backing_dir.valid()) l.backing_dir.remove(layout(i).backing_name);
    } catch (const Error& e) {
      MPOD_LOG(memory, warning, "cleanup: %s", e.what());
    }
  }
}

namespace {
// Calls `remove(name)` for each name of `dir` that `match` accepts, one entry
// at a time: a failure is logged and the rest are still removed.
template <class Match, class Remove>
void remove_each(const os::Dir& dir, const char* what, Match&& match, Remove&& remove) noexcept {
  std::vector<std::string> names;
  try {
    names = dir.list();
  } catch (const Error& e) {
    MPOD_LOG(memory, warning, "cleanup of %s: %s", what, e.what());
    return;
  }
  for (auto& name : names) {
    if (!match(name)) continue;
    try {
      remove(name);
    } catch (const Error& e) {
      MPOD_LOG(memory, warning, "cleanup of %s: leaving %s: %s", what, dir.path_of(name).c_str(), e.what());
    }
  }
}
}  // namespace

void SharedMemory::remove_process_files(const os::Dir& domain, const ProcessId& id) noexcept {
  const std::string suffix = "_" + id.hex();
  remove_each(
      domain, "a dead process's files",
      [&](const std::string& n) { return n.starts_with("fbarray_") && n.ends_with(suffix); },
      [&](const std::string& n) { FbArray::destroy(domain, n); });
}

void SharedMemory::remove_orphan_process_files(const os::Dir& domain,
                                               const std::function<bool(const ProcessId&)>& registered) noexcept {
  remove_each(
      domain, "files of unregistered processes",
      [&](const std::string& n) {
        const auto us = n.rfind('_');
        if (!n.starts_with("fbarray_") || us == std::string::npos) return false;
        const auto id = ProcessId::parse(n.substr(us + 1));
        return id && !registered(*id);
      },
      [&](const std::string& n) { FbArray::destroy(domain, n); });
}

void SharedMemory::remove_stale_files(const os::Dir& domain, const std::string& prefix,
                                      const std::string& huge_dir) noexcept {
  remove_each(
      domain, "stale page tables", [](const std::string& n) { return n.starts_with("fbarray_memseg-"); },
      [&](const std::string& n) { FbArray::destroy(domain, n); });
  try {
    if (auto pages = domain.try_open_subdir("pages", os::DirRule::owned_by(domain.owner())))
      remove_each(
          *pages, "stale page files", [](const std::string& n) { return n.starts_with("map_"); },
          [&](const std::string& n) { pages->remove_unused(n); });
  } catch (const Error& e) {
    MPOD_LOG(memory, warning, "cleanup of stale page files: %s", e.what());
  }
  std::vector<std::string> dirs;
  if (!huge_dir.empty()) dirs.push_back(huge_dir);
  try {
    for (auto& m : os::hugetlbfs_mounts()) dirs.push_back(m.path);
  } catch (const Error& e) {
    MPOD_LOG(memory, warning, "cleanup of stale hugepage files: %s", e.what());
  }
  const std::string stem = prefix + "map_";
  for (auto& path : dirs) {
    os::Dir d;
    try {
      d = os::Dir::open(path, os::DirRule::volume());
    } catch (const Error& e) {
      MPOD_LOG(memory, info, "not cleaning %s: %s", path.c_str(), e.what());
      continue;
    }
    remove_each(
        d, "stale hugepage files",
        [&](const std::string& n) {
          return n.starts_with(stem) && n.size() > stem.size() &&
                 n.find_first_not_of("0123456789", stem.size()) == std::string::npos;
        },
        [&](const std::string& n) {
          // Only the domain owner's files: in a shared mount, another user's are theirs.
          auto st = d.stat(n);
          if (st && S_ISREG(st->st_mode) && st->st_uid != domain.owner()) {
            MPOD_LOG(memory, notice, "leaving %s: it belongs to uid %u", d.path_of(n).c_str(), unsigned(st->st_uid));
            return;
          }
          if (d.remove_unused(n) == os::Dir::Removal::in_use)
            MPOD_LOG(memory, notice, "leaving %s: another domain with this prefix uses it", d.path_of(n).c_str());
        });
  }
}

}  // namespace mpod
