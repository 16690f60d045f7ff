#include "mpod/fbarray.hpp"

#include <fcntl.h>

#include <atomic>
#include <bit>
#include <cstring>

#include "../os/os.hpp"
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

std::string dir_of(const std::string& path) { return path.substr(0, path.rfind('/')); }

// Who uses the file at `path`, read from its header, for "busy" errors.
std::string describe_holder(const std::string& path) {
  os::Fd fd = os::try_open_file(path, O_RDONLY);
  FbArray::Header h;
  if (fd && os::read_exact_at(fd.get(), &h, sizeof h, 0, path) && h.magic == kMagic) {
    ProcessId id;
    std::memcpy(id.bytes.data(), h.creator, 16);
    return "its creator " + registry::describe(dir_of(path), id) + " or another attached process";
  }
  return "another process";
}

[[noreturn]] void throw_busy(const std::string& path, const char* doing) {
  throw Error(Errc::busy,
              std::string("cannot ") + doing + " fbarray " + path + ": it is locked by " +
                  describe_holder(path) +
                  "; stop that process, or wait for it to finish starting",
              path);
}
}  // namespace

FbArray::FbArray(std::string path, int fd, Header* h, size_t map_len) noexcept
    : path_(std::move(path)), fd_(fd), header_(h), map_len_(map_len) {}

FbArray::FbArray(FbArray&& o) noexcept { *this = std::move(o); }

FbArray& FbArray::operator=(FbArray&& o) noexcept {
  if (this != &o) {
    detach();
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    header_ = std::exchange(o.header_, nullptr);
    map_len_ = std::exchange(o.map_len_, 0);
  }
  return *this;
}

FbArray::~FbArray() { detach(); }

FbArray FbArray::create(const std::string& dir, const std::string& name, uint32_t len,
                        uint32_t elt_size, const ProcessId& creator) {
  if (len == 0 || elt_size == 0)
    throw Error(Errc::invalid_argument, "fbarray " + name + " needs a nonzero length and element size");
  std::string path = dir + "/" + name;
  Geometry g = geometry(len, elt_size);
  os::Fd fd = os::open_file(path, O_RDWR | O_CREAT, 0600);
  // Exclusive while we (re)initialise: fails if anybody still has it attached.
  if (!os::try_lock(fd.get(), os::LockKind::exclusive, path)) throw_busy(path, "create");
  os::truncate_file(fd.get(), 0, path);  // drops any stale content
  os::truncate_file(fd.get(), g.file_size, path);
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
    throw_busy(path, "share");
  }
  MPOD_LOG(fbarray, debug, "created %s: %u x %u bytes", path.c_str(), len, elt_size);
  return FbArray(path, fd.release(), h, g.file_size);
}

FbArray FbArray::attach(const std::string& dir, const std::string& name) {
  std::string path = dir + "/" + name;
  os::Fd fd = os::try_open_file(path, O_RDWR);
  if (!fd)
    throw Error(Errc::not_found, "fbarray " + path + " does not exist; is the primary running?",
                path, ENOENT);
  if (!os::try_lock(fd.get(), os::LockKind::shared, path)) throw_busy(path, "attach to");
  uint64_t size = os::file_size(fd.get(), path);
  Header h;
  auto corrupt = [&](const std::string& why) {
    return Error(Errc::corrupt,
                 "fbarray " + path + " is corrupt (" + why +
                     "); stop every process of this prefix and restart the primary, which recreates it",
                 path);
  };
  if (size < sizeof(Header) || !os::read_exact_at(fd.get(), &h, sizeof h, 0, path))
    throw corrupt("truncated to " + std::to_string(size) + " bytes");
  if (h.magic != kMagic) throw corrupt("bad magic number");
  if (h.version != kVersion || h.header_size != sizeof(Header))
    throw Error(Errc::version_mismatch,
                "fbarray " + path + " has layout version " + std::to_string(h.version) +
                    " but this program uses " + std::to_string(kVersion) +
                    "; run the same mpod version in every process of a prefix",
                path);
  Geometry g = geometry(h.len, h.elt_size);
  if (h.len == 0 || h.elt_size == 0 || g.data_offset != h.data_offset ||
      g.mask_offset != h.mask_offset || g.file_size != h.file_size)
    throw corrupt("inconsistent sizes");
  if (size < g.file_size)
    throw corrupt("truncated: " + std::to_string(size) + " bytes, needs " + std::to_string(g.file_size));
  if (h.initialized.load() != 1) throw corrupt("never finished initialising");
  auto* mapped = static_cast<Header*>(os::map_shared(g.file_size, fd.get(), path));
  MPOD_LOG(fbarray, debug, "attached %s: %u x %u bytes", path.c_str(), h.len, h.elt_size);
  return FbArray(path, fd.release(), mapped, g.file_size);
}

bool FbArray::destroy(const std::string& dir, const std::string& name) {
  std::string path = dir + "/" + name;
  os::Fd fd = os::try_open_file(path, O_RDWR);
  if (!fd) return false;
  if (!os::try_lock(fd.get(), os::LockKind::exclusive, path)) throw_busy(path, "destroy");
  return os::remove_file(path);
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

uint32_t FbArray::len() const noexcept { return header_->len; }
uint32_t FbArray::elt_size() const noexcept { return header_->elt_size; }
uint32_t FbArray::count_used() const noexcept {
  return header_->count.load(std::memory_order_acquire);
}
ProcessId FbArray::creator() const noexcept {
  ProcessId id;
  std::memcpy(id.bytes.data(), header_->creator, 16);
  return id;
}

void* FbArray::get(uint32_t idx) const {
  if (idx >= header_->len)
    throw Error(Errc::invalid_argument, "fbarray " + path_ + ": index " + std::to_string(idx) +
                                            " out of range (length " + std::to_string(header_->len) + ")");
  return reinterpret_cast<char*>(header_) + header_->data_offset + uint64_t(idx) * header_->elt_size;
}

namespace {
Word* mask_words(FbArray::Header* h) {
  return reinterpret_cast<Word*>(reinterpret_cast<char*>(h) + h->mask_offset);
}
}  // namespace

bool FbArray::set_used(uint32_t idx) {
  get(idx);  // range check
  uint64_t bit = 1ull << (idx % 64);
  // acq_rel: the element's contents written before set_used are visible to
  // whoever observes the bit, and we see the contents of whoever freed it.
  bool was = mask_words(header_)[idx / 64].fetch_or(bit, std::memory_order_acq_rel) & bit;
  if (!was) header_->count.fetch_add(1, std::memory_order_relaxed);
  return was;
}

bool FbArray::set_free(uint32_t idx) {
  get(idx);
  uint64_t bit = 1ull << (idx % 64);
  bool was = mask_words(header_)[idx / 64].fetch_and(~bit, std::memory_order_acq_rel) & bit;
  if (was) header_->count.fetch_sub(1, std::memory_order_relaxed);
  return was;
}

bool FbArray::is_used(uint32_t idx) const {
  get(idx);
  return mask_words(header_)[idx / 64].load(std::memory_order_acquire) & (1ull << (idx % 64));
}

std::optional<uint32_t> FbArray::find_next(uint32_t start, bool used) const {
  const uint32_t n = header_->len;
  if (start >= n) return std::nullopt;
  Word* words = mask_words(header_);
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
  if (start >= header_->len) return 0;
  auto other = find_next(start, !used);
  return (other ? *other : header_->len) - start;
}

std::optional<uint32_t> FbArray::find_next_used(uint32_t start) const { return find_next(start, true); }
std::optional<uint32_t> FbArray::find_next_free(uint32_t start) const { return find_next(start, false); }
uint32_t FbArray::run_length_used(uint32_t start) const { return run_length(start, true); }
uint32_t FbArray::run_length_free(uint32_t start) const { return run_length(start, false); }

std::optional<uint32_t> FbArray::find_next_n_free(uint32_t start, uint32_t n) const {
  if (n == 0) return start < header_->len ? std::optional<uint32_t>(start) : std::nullopt;
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
