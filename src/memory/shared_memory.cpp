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
  std::string dir;
  uint64_t page_size, seg_size;
  bool hugepages;
  uint64_t free_pages;
};

std::vector<Source> page_sources(const MemoryParams& p) {
  std::vector<Source> out;
  if (p.no_huge) {
    std::string dir = p.domain_dir + "/pages";
    os::make_dirs(dir, 0700);
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
    out.push_back({p.huge_dir, ps, ps, true, free_pages});
    return out;
  }
  for (auto& m : mounts) {
    bool seen = false;
    for (auto& s : out) seen |= s.page_size == m.page_size;
    if (!seen) out.push_back({m.path, m.page_size, m.page_size, true, m.free_pages});
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
            size_name(s.page_size) + " in " + s.dir;
  throw Error(Errc::no_memory,
              "not enough free hugepages for -m " + std::to_string(bytes >> 20) + " (" + have +
                  "); raise /proc/sys/vm/nr_hugepages, lower -m, or run with --no-huge");
}

// Every process mapping a backing file holds a shared lock on it, so a file
// in use is never removed or reused, even by a domain in another runtime
// directory that happens to share the prefix (hugetlbfs names are per mount).
os::Fd open_backing(const std::string& path, bool create) {
  os::Fd fd = os::open_file(path, O_RDWR | (create ? O_CREAT : 0), 0600);
  if (!os::try_lock(fd.get(), create ? os::LockKind::exclusive : os::LockKind::shared, path))
    throw Error(Errc::busy,
                create ? "page file " + path +
                             " is in use by processes of another mpod domain with the same prefix; "
                             "give this domain its own --file-prefix"
                       : "page file " + path + " is being recreated by a new primary; start again",
                path);
  os::flock_shared(fd.get(), path);
  return fd;
}
}  // namespace

struct SharedMemory::List {
  FbArray shared;  // the primary's page table
  FbArray local;   // which segments this process has mapped
  os::Fd backing;
  std::string backing_path;
};

std::string SharedMemory::backing_path(const MemsegListLayout& l) const {
  std::string dir = !l.hugepages ? params_.domain_dir + "/pages"
                    : !params_.huge_dir.empty() ? params_.huge_dir
                                                : std::string(l.backing_dir);
  return dir + "/" + l.backing_name;
}

std::unique_ptr<SharedMemory> SharedMemory::create(const MemoryParams& p, MemoryLayout& layout,
                                                   uint64_t* base_out, uint64_t* len_out) {
  std::unique_ptr<SharedMemory> m(new SharedMemory());
  m->params_ = p;
  m->layout_ = &layout;
  m->primary_ = true;
  auto sources = page_sources(p);
  uint64_t initial = p.initial_bytes;
  size_t first = choose_initial(sources, initial);
  if (sources.size() > MemoryLayout::kMaxLists) sources.resize(MemoryLayout::kMaxLists);

  // Lay the lists out one after another, each aligned to its page size.
  const uint64_t base = p.base_va ? p.base_va : kDefaultBase;
  uint64_t cursor = base;
  layout.n_lists = static_cast<uint32_t>(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    auto& s = sources[i];
    auto& l = layout.lists[i];
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
    copy_name(l.backing_dir, sizeof l.backing_dir, s.dir);
    cursor += cap_bytes;
  }
  m->len_ = cursor - base;
  m->base_ = os::reserve_range(reinterpret_cast<void*>(base), m->len_, true);
  *base_out = base;
  *len_out = m->len_;

  try {
    for (uint32_t i = 0; i < layout.n_lists; ++i) {
      auto& l = layout.lists[i];
      auto list = std::make_unique<List>();
      list->shared = FbArray::create(p.domain_dir, l.fbarray_name, l.capacity, sizeof(Memseg), p.self);
      list->local = FbArray::create(p.domain_dir, std::string(l.fbarray_name) + "_" + p.self.hex(),
                                    l.capacity, sizeof(uint64_t), p.self);
      list->backing_path = m->backing_path(l);
      list->backing = open_backing(list->backing_path, true);
      os::truncate_file(list->backing.get(), 0, list->backing_path);  // drop stale pages
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
  m->len_ = len;
  m->base_ = os::reserve_range(reinterpret_cast<void*>(base), len, true);
  for (uint32_t i = 0; i < layout.n_lists; ++i) {
    auto& l = layout.lists[i];
    auto list = std::make_unique<List>();
    list->shared = FbArray::attach(p.domain_dir, l.fbarray_name);
    if (list->shared.len() != l.capacity || list->shared.elt_size() != sizeof(Memseg))
      throw Error(Errc::corrupt,
                  "fbarray " + list->shared.path() + " does not match the config; restart the primary",
                  list->shared.path());
    // Named by our id, never our PID: two pods' PID 1 cannot collide here.
    list->local = FbArray::create(p.domain_dir, std::string(l.fbarray_name) + "_" + p.self.hex(),
                                  l.capacity, sizeof(uint64_t), p.self);
    list->backing_path = m->backing_path(l);
    list->backing = open_backing(list->backing_path, false);
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
  auto& l = layout_->lists[i];
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
    auto* first = list.shared.at<Memseg>(*k);
    os::map_shared_fixed(reinterpret_cast<void*>(first->addr), uint64_t(run) * l.seg_size,
                         list.backing.get(), first->file_offset, list.backing_path);
    for (uint32_t j = *k; j < *k + run; ++j) {
      *list.local.at<uint64_t>(j) = list.shared.at<Memseg>(j)->addr;
      list.local.set_used(j);
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
  auto& l = layout_->lists[i];
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
  return uint64_t(lists_[i]->shared.count_used()) * layout_->lists[i].seg_size;
}

std::vector<MemoryUsage> SharedMemory::usage() const {
  std::vector<MemoryUsage> out;
  for (uint32_t i = 0; i < layout_->n_lists; ++i) {
    MemoryUsage u;
    u.page_size = layout_->lists[i].page_size;
    u.hugepages = layout_->lists[i].hugepages;
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
      if (!l.backing_path.empty()) os::remove_file(l.backing_path);
    } catch (const Error& e) {
      MPOD_LOG(memory, warning, "cleanup: %s", e.what());
    }
  }
}

void SharedMemory::remove_process_files(const std::string& domain_dir, const ProcessId& id) noexcept {
  std::string suffix = "_" + id.hex();
  try {
    for (auto& name : os::list_dir(domain_dir))
      if (name.starts_with("fbarray_") && name.ends_with(suffix)) FbArray::destroy(domain_dir, name);
  } catch (const Error& e) {
    MPOD_LOG(memory, warning, "cleanup of process %s: %s", id.short_hex().c_str(), e.what());
  }
}

void SharedMemory::remove_stale_files(const std::string& domain_dir, const std::string& prefix,
                                      const std::string& huge_dir) noexcept {
  try {
    for (auto& name : os::list_dir(domain_dir))
      if (name.starts_with("fbarray_memseg-")) FbArray::destroy(domain_dir, name);
    for (auto& name : os::list_dir(domain_dir + "/pages"))
      if (name.starts_with("map_")) os::remove_file(domain_dir + "/pages/" + name);
    std::vector<std::string> dirs;
    if (!huge_dir.empty()) dirs.push_back(huge_dir);
    for (auto& m : os::hugetlbfs_mounts()) dirs.push_back(m.path);
    const std::string stem = prefix + "map_";
    for (auto& d : dirs)
      for (auto& name : os::list_dir(d)) {
        if (!name.starts_with(stem) || name.size() == stem.size() ||
            name.find_first_not_of("0123456789", stem.size()) != std::string::npos)
          continue;
        std::string path = d + "/" + name;
        os::Fd fd = os::try_open_file(path, O_RDWR);
        if (fd && os::try_lock(fd.get(), os::LockKind::exclusive, path)) os::remove_file(path);
        else MPOD_LOG(memory, notice, "leaving %s: another domain with this prefix uses it", path.c_str());
      }
  } catch (const Error& e) {
    MPOD_LOG(memory, warning, "cleanup of stale memory files: %s", e.what());
  }
}

}  // namespace mpod
