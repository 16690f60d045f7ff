#include "mpod/fbarray.hpp"

#include <fcntl.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstring>

#include "../os/dir.hpp"
#include "../os/os.hpp"
#include "fbarray_header.hpp"
#include "../runtime/registry.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

// File layout: Header, then the elements (len * elt_size, 64-byte aligned),
// then the used mask (one bit per element in 64-bit words).
struct FbArray::Header {
  uint64_t magic;
  uint32_t version;
  uint32_t header_size;
  uint32_t len;
  uint32_t elt_size;
  uint64_t data_offset;
  uint64_t mask_offset;
  uint64_t file_size;
  std::atomic<uint32_t> count;
  std::atomic<uint32_t> initialized;  // written last by create(); attach() refuses 0
  uint8_t creator[16];
};

namespace {
constexpr uint64_t kMagic = 0x5241424650444f4dull;  // "MODPFBAR" little-endian
constexpr uint32_t kVersion = 1;
using Word = std::atomic<uint64_t>;
static_assert(std::atomic<uint64_t>::is_always_lock_free && sizeof(Word) == 8);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(FbArray::Header) == 72 && alignof(FbArray::Header) == 8,
              "fbarray header layout is shared between processes; bump kVersion if it changes");

constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct Geometry {
  uint64_t data_offset, mask_offset, file_size;
};
Geometry geometry(uint32_t len, uint32_t elt_size) {
  Geometry g;
  g.data_offset = align_up(sizeof(FbArray::Header), 64);
  g.mask_offset = align_up(g.data_offset + uint64_t(len) * elt_size, 64);
  g.file_size = align_up(g.mask_offset + (uint64_t(len) + 63) / 64 * 8, os::system_page_size());
  return g;
}

// Who uses the file `name`, read from its header, for "busy" errors.
std::string describe_holder(const os::Dir& dir, const std::string& name) {
  try {
    os::Fd fd = dir.try_open(name, O_RDONLY, os::kAnyOwner);
    FbArray::Header h;
    if (fd && os::read_exact_at(fd.get(), &h, sizeof h, 0, dir.path_of(name)) && h.magic == kMagic) {
      ProcessId id;
      std::memcpy(id.bytes.data(), h.creator, 16);
      return "its creator " + registry::describe(dir.path(), id) + " or another attached process";
    }
  } catch (const Error&) {
  }
  return "another process";
}

[[noreturn]] void throw_busy(const os::Dir& dir, const std::string& name, const char* doing) {
  const std::string path = dir.path_of(name);
  throw Error(Errc::busy,
              std::string("cannot ") + doing + " fbarray " + path + ": it is locked by " +
                  describe_holder(dir, name) + "; stop that process, or wait for it to finish starting",
              path);
}

// The directory of fbarray `name`, for the calls that take paths; errors name the fbarray.
os::Dir open_dir(const std::string& dir, const std::string& name) {
  if (auto d = os::Dir::try_open(dir, os::DirRule::joined())) return std::move(*d);
  throw Error(Errc::not_found, "fbarray " + dir + "/" + name + " cannot be reached: directory " + dir + " does not exist",
              dir + "/" + name, ENOENT);
}
}  // namespace

HeaderCheck check_fbarray_header(const void* bytes, size_t len, uint64_t file_size) {
  FbArray::Header h;
  if (len < sizeof h || file_size < sizeof h)
    return {Errc::corrupt, "truncated to " + std::to_string(std::min<uint64_t>(len, file_size)) + " bytes"};
  std::memcpy(static_cast<void*>(&h), bytes, sizeof h);
  if (h.magic != kMagic) return {Errc::corrupt, "bad magic number"};
  if (h.version != kVersion || h.header_size != sizeof(FbArray::Header))
    return {Errc::version_mismatch, "layout version " + std::to_string(h.version) + ", but this program uses " +
                                        std::to_string(kVersion)};
  if (h.len == 0 || h.elt_size == 0 || h.elt_size > kMaxEltSize) return {Errc::corrupt, "inconsistent sizes"};
  Geometry g = geometry(h.len, h.elt_size);
  if (g.data_offset != h.data_offset || g.mask_offset != h.mask_offset || g.file_size != h.file_size)
    return {Errc::corrupt, "inconsistent sizes"};
  if (file_size < g.file_size)
    return {Errc::corrupt, "truncated: " + std::to_string(file_size) + " bytes, needs " + std::to_string(g.file_size)};
  if (h.initialized.load(std::memory_order_relaxed) != 1) return {Errc::corrupt, "never finished initialising"};
  if (h.count.load(std::memory_order_relaxed) > h.len) return {Errc::corrupt, "more elements in use than it has"};
  return {};
}

FbArray::FbArray(std::string path, int fd, Header* h, uint32_t len, uint32_t elt_size) noexcept
    : path_(std::move(path)), fd_(fd), header_(h), len_(len), elt_size_(elt_size) {
  const Geometry g = geometry(len, elt_size);
  map_len_ = g.file_size;
  data_offset_ = g.data_offset;
  mask_offset_ = g.mask_offset;
}

FbArray::FbArray(FbArray&& o) noexcept { *this = std::move(o); }

FbArray& FbArray::operator=(FbArray&& o) noexcept {
  if (this != &o) {
    detach();
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    header_ = std::exchange(o.header_, nullptr);
    map_len_ = std::exchange(o.map_len_, 0);
    len_ = std::exchange(o.len_, 0);
    elt_size_ = std::exchange(o.elt_size_, 0);
    data_offset_ = std::exchange(o.data_offset_, 0);
    mask_offset_ = std::exchange(o.mask_offset_, 0);
  }
  return *this;
}

FbArray::~FbArray() { detach(); }

FbArray FbArray::create(const std::string& dir, const std::string& name, uint32_t len,
                        uint32_t elt_size, const ProcessId& creator) {
  return create(open_dir(dir, name), name, len, elt_size, creator);
}

FbArray FbArray::attach(const std::string& dir, const std::string& name) {
  return attach(open_dir(dir, name), name, os::kAnyOwner);
}

bool FbArray::destroy(const std::string& dir, const std::string& name) { return destroy(open_dir(dir, name), name); }

FbArray FbArray::create(const os::Dir& dir, const std::string& name, uint32_t len, uint32_t elt_size,
                        const ProcessId& creator) {
  if (len == 0 || elt_size == 0 || elt_size > kMaxEltSize)
    throw Error(Errc::invalid_argument, "fbarray " + name + " needs a nonzero length and an element size of 1.." +
                                            std::to_string(kMaxEltSize));
  const std::string path = dir.path_of(name);
  Geometry g = geometry(len, elt_size);
  // A stale file of that name is removed, never reused: what is created here is created anew, exclusively.
  destroy(dir, name);
  os::Fd fd = dir.try_create(name, O_RDWR, 0600);
  if (!fd) throw_busy(dir, name, "create");  // another process created it meanwhile
  // Exclusive while we initialise: nobody attaches to a half-made file.
  if (!os::try_lock(fd.get(), os::LockKind::exclusive, path)) throw_busy(dir, name, "create");
  os::truncate_file(fd.get(), g.file_size, path);
  os::allocate_file(fd.get(), 0, g.file_size, path);  // a hole touched on a full filesystem is a SIGBUS
  auto* h = static_cast<Header*>(os::map_shared(g.file_size, fd.get(), path));
  h->magic = kMagic;
  h->version = kVersion;
  h->header_size = sizeof(Header);
  h->len = len;
  h->elt_size = elt_size;
  h->data_offset = g.data_offset;
  h->mask_offset = g.mask_offset;
  h->file_size = g.file_size;
  h->count.store(0, std::memory_order_relaxed);
  std::memcpy(h->creator, creator.bytes.data(), 16);
  h->initialized.store(1, std::memory_order_release);
  // Downgrade: others may now attach, but nobody can re-initialise or destroy it.
  if (!os::try_lock(fd.get(), os::LockKind::shared, path)) {
    os::unmap(h, g.file_size);
    throw_busy(dir, name, "share");
  }
  MPOD_LOG(fbarray, debug, "created %s: %u x %u bytes", path.c_str(), len, elt_size);
  return FbArray(path, fd.release(), h, len, elt_size);
}

FbArray FbArray::attach(const os::Dir& dir, const std::string& name, uid_t owner) {
  const std::string path = dir.path_of(name);
  os::Fd fd = dir.try_open(name, O_RDWR, owner);
  if (!fd)
    throw Error(Errc::not_found, "fbarray " + path + " does not exist; is the primary running?",
                path, ENOENT);
  if (!os::try_lock(fd.get(), os::LockKind::shared, path)) throw_busy(dir, name, "attach to");
  const uint64_t size = os::file_size(fd.get(), path);
  Header h;
  const bool whole = size >= sizeof h && os::read_exact_at(fd.get(), &h, sizeof h, 0, path);
  const HeaderCheck check = check_fbarray_header(&h, whole ? sizeof h : 0, size);
  if (check.code == Errc::version_mismatch)
    throw Error(Errc::version_mismatch,
                "fbarray " + path + " has " + check.why + "; run the same mpod version in every process of a prefix",
                path);
  if (!check.why.empty())
    throw Error(Errc::corrupt,
                "fbarray " + path + " is corrupt (" + check.why +
                    "); stop every process of this prefix and restart the primary, which recreates it",
                path);
  auto* mapped = static_cast<Header*>(os::map_shared(h.file_size, fd.get(), path));
  MPOD_LOG(fbarray, debug, "attached %s: %u x %u bytes", path.c_str(), h.len, h.elt_size);
  // The geometry is taken from the checked copy, never read from the shared header again.
  return FbArray(path, fd.release(), mapped, h.len, h.elt_size);
}

bool FbArray::destroy(const os::Dir& dir, const std::string& name) {
  switch (dir.remove_unused(name)) {
    case os::Dir::Removal::absent: return false;
    case os::Dir::Removal::removed: return true;
    case os::Dir::Removal::in_use: throw_busy(dir, name, "destroy");
  }
  return false;
}

void FbArray::detach() noexcept {
  if (!header_) return;
  os::unmap(header_, map_len_);
  header_ = nullptr;
  os::Fd close_it(std::exchange(fd_, -1));  // closing drops our shared lock
  MPOD_LOG(fbarray, debug, "detached %s", path_.c_str());
}

void FbArray::destroy() {
  if (path_.empty()) return;  // never created or attached
  std::string path = path_;
  detach();
  auto slash = path.rfind('/');
  destroy(path.substr(0, slash), path.substr(slash + 1));
}

uint32_t FbArray::len() const noexcept { return len_; }
uint32_t FbArray::elt_size() const noexcept { return elt_size_; }
uint32_t FbArray::count_used() const noexcept {
  return header_->count.load(std::memory_order_acquire);
}
ProcessId FbArray::creator() const noexcept {
  ProcessId id;
  std::memcpy(id.bytes.data(), header_->creator, 16);
  return id;
}

void* FbArray::get(uint32_t idx) const {
  if (idx >= len_)
    throw Error(Errc::invalid_argument, "fbarray " + path_ + ": index " + std::to_string(idx) +
                                            " out of range (length " + std::to_string(len_) + ")");
  return reinterpret_cast<char*>(header_) + data_offset_ + uint64_t(idx) * elt_size_;
}

namespace {
Word* mask_words(FbArray::Header* h, uint64_t mask_offset) {
  return reinterpret_cast<Word*>(reinterpret_cast<char*>(h) + mask_offset);
}
}  // namespace

bool FbArray::set_used(uint32_t idx) {
  get(idx);  // range check
  uint64_t bit = 1ull << (idx % 64);
  // acq_rel: the element's contents written before set_used are visible to
  // whoever observes the bit, and we see the contents of whoever freed it.
  bool was = mask_words(header_, mask_offset_)[idx / 64].fetch_or(bit, std::memory_order_acq_rel) & bit;
  if (!was) header_->count.fetch_add(1, std::memory_order_relaxed);
  return was;
}

bool FbArray::set_free(uint32_t idx) {
  get(idx);
  uint64_t bit = 1ull << (idx % 64);
  bool was = mask_words(header_, mask_offset_)[idx / 64].fetch_and(~bit, std::memory_order_acq_rel) & bit;
  if (was) header_->count.fetch_sub(1, std::memory_order_relaxed);
  return was;
}

bool FbArray::is_used(uint32_t idx) const {
  get(idx);
  return mask_words(header_, mask_offset_)[idx / 64].load(std::memory_order_acquire) & (1ull << (idx % 64));
}

std::optional<uint32_t> FbArray::find_next(uint32_t start, bool used) const {
  const uint32_t n = len_;
  if (start >= n) return std::nullopt;
  Word* words = mask_words(header_, mask_offset_);
  uint32_t w = start / 64;
  uint64_t bits = words[w].load(std::memory_order_acquire);
  if (!used) bits = ~bits;
  bits &= ~0ull << (start % 64);
  const uint32_t nwords = (n + 63) / 64;
  for (;;) {
    if (bits) {
      uint32_t idx = w * 64 + static_cast<uint32_t>(std::countr_zero(bits));
      return idx < n ? std::optional<uint32_t>(idx) : std::nullopt;
    }
    if (++w >= nwords) return std::nullopt;
    bits = words[w].load(std::memory_order_acquire);
    if (!used) bits = ~bits;
  }
}

uint32_t FbArray::run_length(uint32_t start, bool used) const {
  if (start >= len_) return 0;
  auto other = find_next(start, !used);
  return (other ? *other : len_) - start;
}

std::optional<uint32_t> FbArray::find_next_used(uint32_t start) const { return find_next(start, true); }
std::optional<uint32_t> FbArray::find_next_free(uint32_t start) const { return find_next(start, false); }
uint32_t FbArray::run_length_used(uint32_t start) const { return run_length(start, true); }
uint32_t FbArray::run_length_free(uint32_t start) const { return run_length(start, false); }

std::optional<uint32_t> FbArray::find_next_n_free(uint32_t start, uint32_t n) const {
  if (n == 0) return start < len_ ? std::optional<uint32_t>(start) : std::nullopt;
  while (auto s = find_next(start, false)) {
    uint32_t run = run_length(*s, false);
    if (run >= n) return s;
    start = *s + run;
  }
  return std::nullopt;
}

FbArray::Run FbArray::find_biggest_free(uint32_t start) const {
  Run best;
  while (auto s = find_next(start, false)) {
    uint32_t run = run_length(*s, false);
    if (run > best.len) best = {*s, run};
    start = *s + run;
  }
  return best;
}

}  // namespace mpod
