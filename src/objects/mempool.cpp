// Mempool: objects in one memzone, free ones in an MP/MC ring plus per-thread caches.
//
// Layout of memzone "MP_<name>": the Header, then kMaxCaches cache slots
// (when the pool has caches), then the objects, each `stride` bytes (the
// object size rounded up to 64). The common pool is Ring "MP_<name>".
//
// Cache slots are claimed by a thread with a CAS of their `token` from 0 to
// the thread's token, and from then on only that thread touches the slot's
// array (its length is an atomic so other processes can count). A slot goes
// back to 0 when its thread exits or its process shuts down, after its
// objects are flushed to the ring. A slot whose owner process died is taken
// over by a reclaimer with a CAS to kReclaiming (one winner), flushed, freed.
#include "mpod/mempool.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "../os/os.hpp"
#include "../runtime/registry.hpp"
#include "mempool_caches.hpp"
#include "object_header.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"
#include "mpod/memzone.hpp"
#include "mpod/runtime.hpp"

namespace mpod {

namespace {
constexpr uint32_t kPoolMagic = 0x4c4f4f50;  // "POOL"
constexpr uint32_t kPoolVersion = 1;
constexpr const char* kPrefix = "MP_";
constexpr uint64_t kReclaiming = ~0ull;
constexpr uint64_t kMaxElt = 1u << 20;
constexpr uint32_t kMaxObjects = 1u << 30;

constexpr uint64_t align64(uint64_t v) { return (v + 63) & ~uint64_t(63); }
}  // namespace

namespace {
// The distance between objects: whole lines, an odd number of them when
// spreading (MempoolOptions::spread): consecutive objects then start in
// different cache sets, all sets in turn.
uint32_t spread_stride(uint32_t lined_size, bool spread) {
  return spread && (lined_size / 64) % 2 == 0 ? lined_size + 64 : lined_size;
}
uint64_t cache_bytes_for(uint32_t cap) { return align64(offsetof(Mempool::Cache, objs) + sizeof(void*) * std::max(cap, 1u)); }
}  // namespace

struct Mempool::Header {
  uint32_t magic;  // written last (release)
  uint32_t version;
  uint32_t n;
  uint32_t elt_size;
  uint32_t stride;
  uint32_t cache_size;
  uint32_t cache_cap;    // slots per cache: 3 x cache_size (flush at 1.5x, plus one bulk)
  uint32_t flush_at;     // cache length above which a put gives the excess back
  uint64_t instance;     // random: tells a recreated pool at the same address apart
  uint64_t caches_off;   // from the header
  uint64_t cache_bytes;  // per cache
  uint64_t objs_off;
  char name[kMaxNameLen + 1];

  unsigned char* base() noexcept { return reinterpret_cast<unsigned char*>(this); }
  Cache* cache(uint32_t i) noexcept { return reinterpret_cast<Cache*>(base() + caches_off + i * cache_bytes); }
  unsigned char* objs() noexcept { return base() + objs_off; }
};

namespace {

using Header = Mempool::Header;

// A pool's name as stored, within its field (the header is the group's to write).
std::string_view name_of(const Header* h) { return {h->name, strnlen(h->name, sizeof h->name)}; }

// Throws corrupt unless the header is one create() could have written for a
// memzone of `bytes` bytes: every size and offset a call uses is checked here,
// once, and the handle keeps its own copies.
void check_header(const Header* h, uint64_t bytes) {
  const uint32_t cap = h->cache_size * 3;
  const uint64_t caches_off = align64(sizeof(Header));
  const uint64_t cache_bytes = h->cache_size ? cache_bytes_for(cap) : 0;
  const uint64_t objs_off = caches_off + (h->cache_size ? Mempool::kMaxCaches * cache_bytes : 0);
  const bool sound = h->n >= 1 && h->n <= kMaxObjects && h->elt_size >= 1 && h->elt_size <= kMaxElt &&
                     h->stride >= align64(h->elt_size) && h->stride % 64 == 0 && h->stride <= kMaxElt + 128 &&
                     h->cache_size <= Mempool::kMaxCacheSize && h->cache_cap == cap &&
                     h->flush_at == h->cache_size + h->cache_size / 2 && h->caches_off == caches_off &&
                     h->cache_bytes == cache_bytes && h->objs_off == objs_off &&
                     objs_off + uint64_t(h->n) * h->stride <= bytes;
  if (!sound)
    throw Error(Errc::corrupt, "mempool '" + std::string(name_of(h)) +
                                   "' is corrupt: its header does not fit the memory it has; destroy and recreate it");
}

auto& g_epoch = detail::mempool_epoch;  // bumped when the Runtime shuts down

// The caches this thread holds, by pool. Flushed when the thread exits.
struct ThreadCaches {
  struct Entry {
    Header* pool;
    uint64_t instance;
    void* cache;  // Mempool::Cache*, or nullptr: every slot was taken, go to the ring
    Ring ring;
    uint32_t cache_cap;  // the pool's, as checked
  };
  std::vector<Entry> entries;
  uint64_t epoch = 0;
  uint64_t token = 0;
  ~ThreadCaches();
};
thread_local ThreadCaches t_caches;


std::string memzone_name(std::string_view name) { return kPrefix + std::string(name); }

void validate_pool_name(std::string_view name) {
  if (name.empty() || name.size() > Mempool::kMaxNameLen)
    throw Error(Errc::invalid_argument, "mempool name '" + std::string(name) + "' must be 1 to " +
                                            std::to_string(Mempool::kMaxNameLen) + " characters");
  Memzones::validate_name(memzone_name(name));
}

}  // namespace

// ---- caches ----

namespace {

// Puts objs[0..n) on the pool's common ring; returns how many went. The ring
// has a slot for every object of the pool, so it is short of room only while
// a producer's claim is in flight (wait: it publishes), or when it already
// holds the whole pool, which can only mean objects were put back twice (a
// caller's bug): then the surplus is dropped and logged rather than spun on
// for ever. A consumer's claim in flight does not fool that test: its
// objects still count as in the ring until it publishes.
unsigned give_back(Ring& ring, void* const* objs, unsigned n, std::string_view pool) noexcept {
  unsigned done = 0;
  while (done < n) {
    const unsigned k = ring.enqueue_burst(objs + done, n - done, Sync::multi);
    if (k == 0 && ring.count() >= ring.capacity()) {
      MPOD_LOG(mempool, error, "mempool '%.*s': %u objects more than the pool has were put back (an object put twice?); "
               "dropping them: the caller has a bug", int(pool.size()), pool.data(), n - done);
      return done;
    }
    done += k;
  }
  return done;
}

// A cache's length, which the group can write, within its `cap` slots; a
// length past them is logged and taken as empty (what it held is lost).
uint32_t cache_len(Mempool::Cache* c, uint32_t cap, std::string_view pool) noexcept {
  const uint32_t len = c->len.load(std::memory_order_relaxed);
  if (len <= cap) [[likely]] return len;
  MPOD_LOG(mempool, error, "mempool '%.*s': a cache claims %u objects but has %u slots; its shared memory was "
           "overwritten, and what it held is lost", int(pool.size()), pool.data(), len, cap);
  c->len.store(0, std::memory_order_relaxed);
  return 0;
}

// Every step of a cache's flush leaves it so that a reclaimer after our
// death gives back nothing the ring already has: the cache lets go of the
// objects (its length) before the ring takes them. A death in between loses
// them (a few hundred nanoseconds' window); the other order handed them out
// twice.
void flush_cache(Mempool::Cache* c, uint32_t cap, Ring& ring, std::string_view pool) noexcept {
  void* out[3 * Mempool::kMaxCacheSize];
  const uint32_t len = std::min<uint32_t>(cache_len(c, cap, pool), 3 * Mempool::kMaxCacheSize);
  std::memcpy(out, c->objs, sizeof(void*) * len);
  c->len.store(0, std::memory_order_release);
  give_back(ring, out, len, pool);
}

void release_cache(Mempool::Cache* c, uint32_t cap, Ring& ring, std::string_view pool) noexcept {
  flush_cache(c, cap, ring, pool);
  std::memset(c->owner, 0, sizeof c->owner);
  c->token.store(0, std::memory_order_release);
}

ThreadCaches::~ThreadCaches() {
  if (epoch != g_epoch.load(std::memory_order_acquire)) return;  // the runtime is gone, and the memory with it
  for (auto& e : entries)
    if (e.cache && e.pool->instance == e.instance)
      release_cache(static_cast<Mempool::Cache*>(e.cache), e.cache_cap, e.ring, name_of(e.pool));
}

}  // namespace

Mempool::Cache* Mempool::thread_cache() noexcept {
  const uint64_t epoch = g_epoch.load(std::memory_order_relaxed);
  // The last pool used, as the inline fast paths see it: trivial, so
  // reaching it costs no TLS wrapper call (t_caches, with its destructor,
  // goes through one on every access).
  auto& last = detail::t_mempool_last;
  if (last.pool == h_ && last.epoch == epoch && last.instance == instance_) return last.cache;
  Cache* c = thread_cache_slow(epoch);
  last = detail::MempoolLastCache{h_, instance_, epoch, c};
  return c;
}

Mempool::Cache* Mempool::thread_cache_slow(uint64_t epoch) noexcept {
  auto& tc = t_caches;
  if (tc.epoch != epoch) {  // first use, or a new runtime: what was held is gone
    tc.entries.clear();
    tc.epoch = epoch;
  }
  for (auto& e : tc.entries)
    if (e.pool == h_) {
      if (e.instance == instance_) return static_cast<Cache*>(e.cache);
      e = tc.entries.back();  // a destroyed pool's memory reused: forget it
      tc.entries.pop_back();
      break;
    }
  if (!tc.token) {
    while (!tc.token || tc.token == kReclaiming) os::random_bytes(&tc.token, sizeof tc.token);
  }
  Cache* mine = nullptr;
  for (uint32_t i = 0; i < kMaxCaches && !mine; ++i) {
    Cache* c = cache_at(i);
    uint64_t free_token = 0;
    if (c->token.compare_exchange_strong(free_token, tc.token, std::memory_order_acquire)) {
      std::memcpy(c->owner, self_.bytes.data(), sizeof c->owner);
      mine = c;
    }
  }
  if (!mine)
    MPOD_LOG(mempool, info, "mempool '%s': all %u caches are taken; this thread uses the common pool directly",
             name().c_str(), kMaxCaches);
  try {
    tc.entries.push_back({h_, instance_, mine, ring_, cache_cap_});
  } catch (...) {  // out of process memory: go without a cache
    if (mine) release_cache(mine, cache_cap_, ring_, name_of(h_));
    return nullptr;
  }
  return mine;
}

void Mempool::flush_thread_cache() noexcept {
  if (cache_size_ == 0) return;
  if (Cache* c = thread_cache()) flush_cache(c, cache_cap_, ring_, name_of(h_));
}

uint32_t Mempool::reclaim_dead_caches() {
  if (cache_size_ == 0) return 0;
  uint32_t recovered = 0;
  for (uint32_t i = 0; i < kMaxCaches; ++i) {
    Cache* c = cache_at(i);
    uint64_t token = c->token.load(std::memory_order_acquire);
    if (token == 0 || token == kReclaiming) continue;
    ProcessId owner;
    std::memcpy(owner.bytes.data(), c->owner, sizeof c->owner);
    if (owner.empty() || owner == self_ || registry::is_alive(domain_dir_, owner)) continue;
    if (!c->token.compare_exchange_strong(token, kReclaiming, std::memory_order_acquire)) continue;
    const uint32_t len = cache_len(c, cache_cap_, name_of(h_));
    MPOD_LOG(mempool, notice, "mempool '%s': giving back %u objects cached by dead process %s", name().c_str(), len,
             owner.short_hex().c_str());
    recovered += len;
    release_cache(c, cache_cap_, ring_, name_of(h_));
  }
  return recovered;
}

void release_process_caches(Runtime& rt) noexcept {
  try {
    const ProcessId self = rt.self().id;
    for (auto& pool : Mempool::list(rt)) {
      if (pool.cache_size() == 0) continue;
      Ring ring = Ring::lookup(rt, memzone_name(pool.name()));
      for (uint32_t i = 0; i < Mempool::kMaxCaches; ++i) {
        auto* c = pool.cache_at(i);
        const uint64_t token = c->token.load(std::memory_order_acquire);
        if (token != 0 && token != kReclaiming && std::memcmp(c->owner, self.bytes.data(), 16) == 0)
          release_cache(c, pool.cache_cap_, ring, name_of(pool.h_));
      }
    }
  } catch (const Error& e) {
    MPOD_LOG(mempool, warning, "shutdown: could not give back this process's mempool caches: %s", e.what());
  }
  g_epoch.fetch_add(1, std::memory_order_release);
}

// ---- get and put ----

Mempool::Mempool(Header* h, Ring ring, std::string domain_dir, ProcessId self) noexcept
    : instance_(h->instance),
      objs_base_(reinterpret_cast<uintptr_t>(h->objs())),
      last_offset_(uint64_t(h->n) * h->stride - 1),
      cache_size_(h->cache_size),
      flush_at_(h->flush_at),
      cache_cap_(h->cache_cap),
      n_(h->n),
      stride_(h->stride),
      caches_base_(reinterpret_cast<uintptr_t>(h->base() + h->caches_off)),
      cache_bytes_(h->cache_bytes),
      h_(h),
      ring_(ring),
      domain_dir_(std::move(domain_dir)),
      self_(self) {}

bool Mempool::get_bulk_slow(void** objs, unsigned n) noexcept {
  if (n == 0 || n > kMaxBulk) return false;
  Cache* c = cache_size_ ? thread_cache() : nullptr;
  if (!c || n > cache_size_) return ring_.dequeue_bulk(objs, n, Sync::multi) == n;
  uint32_t len = cache_len(c, cache_cap_, name_of(h_));
  if (len < n) {
    // Refill to cache_size beyond what is asked, like DPDK; settle for less if the pool runs low.
    unsigned want = cache_size_ + n - len;
    unsigned got = ring_.dequeue_burst(c->objs + len, want, Sync::multi);
    len += got;
    if (len < n) {
      c->len.store(len, std::memory_order_relaxed);
      return false;
    }
  }
  // Hand out from the top of the cache: the most recently used objects, warm in cache.
  for (unsigned i = 0; i < n; ++i) objs[i] = c->objs[len - 1 - i];
  c->len.store(len - n, std::memory_order_relaxed);
  return true;
}

bool Mempool::contains(const void* obj) const noexcept {
  const auto p = reinterpret_cast<uintptr_t>(obj);
  const auto base = objs_base_;
  if (p < base || p >= base + uint64_t(n_) * stride_) return false;
  return (p - base) % stride_ == 0;
}

unsigned Mempool::put_bulk_slow(void* const* objs, unsigned n) noexcept {
  if (n == 0) return 0;
  const auto base = objs_base_;
  const uint64_t end = base + uint64_t(n_) * stride_;
  // Cheap check on every object (range and 64-byte alignment); the exact
  // stride check costs a division and runs in debug builds only.
  bool all_ok = n <= kMaxBulk;
  for (unsigned i = 0; i < n && all_ok; ++i) {
    const auto p = reinterpret_cast<uintptr_t>(objs[i]);
    all_ok = p >= base && p < end && (p & 63) == 0;
#ifndef NDEBUG
    all_ok = all_ok && (p - base) % stride_ == 0;
#endif
  }
  if (!all_ok) {  // cold: put back the good ones one by one, name the bad ones
    unsigned done = 0;
    for (unsigned i = 0; i < n; ++i) {
      if (contains(objs[i])) {
        done += put_bulk_slow(&objs[i], 1);
      } else {
        MPOD_LOG(mempool, error, "mempool '%s': refusing to take back %p: it is not one of its objects "
                 "(wrong pool, or not an object's start); the caller has a bug", name().c_str(), objs[i]);
      }
    }
    return done;
  }
  Cache* c = cache_size_ ? thread_cache() : nullptr;
  if (!c || n > cache_size_) return give_back(ring_, objs, n, name_of(h_));
  // n <= cache_size and the cache has 3 x cache_size slots; a length that leaves no room was written by someone else.
  uint32_t len = cache_len(c, cache_cap_ - n, name_of(h_));
  for (unsigned i = 0; i < n; ++i) c->objs[len + i] = objs[i];
  len += n;
  if (len > flush_at_) {  // give back all but cache_size, oldest first
    // Out of the cache before into the ring (see flush_cache): empty while
    // the kept ones move down, then holding them, then the ring takes the rest.
    const unsigned excess = len - cache_size_;
    void* out[3 * kMaxCacheSize];
    std::memcpy(out, c->objs, sizeof(void*) * excess);
    c->len.store(0, std::memory_order_relaxed);
    std::memmove(c->objs, c->objs + excess, sizeof(void*) * cache_size_);
    c->len.store(cache_size_, std::memory_order_release);
    give_back(ring_, out, excess, name_of(h_));
    return n;
  }
  c->len.store(len, std::memory_order_relaxed);
  return n;
}

// ---- counts and iteration ----

uint32_t Mempool::available() const noexcept {
  uint64_t sum = ring_.count();
  if (cache_size_)
    for (uint32_t i = 0; i < kMaxCaches; ++i)
      sum += std::min(cache_at(i)->len.load(std::memory_order_relaxed), cache_cap_);
  return sum > n_ ? n_ : uint32_t(sum);  // counts taken at different moments
}
uint32_t Mempool::size() const noexcept { return n_; }
uint32_t Mempool::elt_size() const noexcept { return h_->elt_size; }
uint32_t Mempool::cache_size() const noexcept { return cache_size_; }
std::string Mempool::name() const { return std::string(name_of(h_)); }

void Mempool::for_each(const std::function<void(void* obj, uint32_t index)>& fn) const {
  for (uint32_t i = 0; i < n_; ++i) fn(reinterpret_cast<void*>(objs_base_ + uint64_t(i) * stride_), i);
}

// ---- create, lookup, destroy ----

Mempool Mempool::create(Runtime& rt, std::string_view name, uint32_t n, uint32_t elt_size, MempoolOptions o) {
  validate_pool_name(name);
  const std::string what = "mempool '" + std::string(name) + "'";
  if (n == 0 || n > kMaxObjects)
    throw Error(Errc::invalid_argument, what + ": " + std::to_string(n) + " objects is not allowed; give 1 to " +
                                            std::to_string(kMaxObjects));
  if (elt_size == 0 || elt_size > kMaxElt)
    throw Error(Errc::invalid_argument, what + ": object size " + std::to_string(elt_size) +
                                            " is not allowed; give 1 to " + std::to_string(kMaxElt) + " bytes");
  if (o.cache_size > kMaxCacheSize)
    throw Error(Errc::invalid_argument, what + ": cache size " + std::to_string(o.cache_size) + " exceeds " +
                                            std::to_string(kMaxCacheSize));
  const uint32_t stride = spread_stride(uint32_t(align64(elt_size)), o.spread);
  const uint32_t cap = o.cache_size * 3;
  const uint64_t cache_bytes = o.cache_size ? cache_bytes_for(cap) : 0;
  const uint64_t caches_off = align64(sizeof(Header));
  const uint64_t objs_off = caches_off + (o.cache_size ? kMaxCaches * cache_bytes : 0);
  const uint64_t total = objs_off + uint64_t(n) * stride;
  Memzone mz;
  try {
    mz = rt.memzones().reserve(memzone_name(name), total, 64);
  } catch (const Error& e) {
    if (e.code() == Errc::already_exists)
      throw Error(Errc::already_exists, "a mempool named '" + std::string(name) + "' already exists in " +
                                            rt.domain_dir() + "; look it up with Mempool::lookup or choose another name");
    throw Error(e.code(), "cannot create " + what + " of " + std::to_string(n) + " objects of " +
                              std::to_string(elt_size) + " bytes (" + std::to_string(total >> 20) +
                              " MiB with caches): " + e.what());
  }
  Ring ring;
  try {
    ring = Ring::create(rt, memzone_name(name), n, RingOptions{8, Sync::multi, Sync::multi});
  } catch (...) {
    rt.memzones().free(memzone_name(name));
    throw;
  }
  auto* h = new (mz.addr) Header{};
  h->version = kPoolVersion;
  h->n = n;
  h->elt_size = elt_size;
  h->stride = stride;
  h->cache_size = o.cache_size;
  h->cache_cap = cap;
  h->flush_at = o.cache_size + o.cache_size / 2;
  os::random_bytes(&h->instance, sizeof h->instance);
  h->caches_off = caches_off;
  h->cache_bytes = cache_bytes;
  h->objs_off = objs_off;
  std::memcpy(h->name, name.data(), name.size());
  if (o.cache_size)
    for (uint32_t i = 0; i < kMaxCaches; ++i) new (h->cache(i)) Cache{};
  Mempool pool(h, ring, rt.domain_dir(), rt.self().id);
  try {
    if (o.constructor) pool.for_each(o.constructor);
  } catch (...) {
    Ring::destroy(rt, memzone_name(name));
    rt.memzones().free(memzone_name(name));
    throw;
  }
  std::vector<void*> batch;
  batch.reserve(256);
  for (uint32_t i = 0; i < n; ++i) {
    batch.push_back(h->objs() + uint64_t(i) * stride);
    if (batch.size() == 256 || i + 1 == n) {
      ring.enqueue_bulk(batch.data(), unsigned(batch.size()), Sync::multi);
      batch.clear();
    }
  }
  std::atomic_ref<uint32_t>(h->magic).store(kPoolMagic, std::memory_order_release);
  return pool;
}

Mempool Mempool::lookup(Runtime& rt, std::string_view name) {
  validate_pool_name(name);
  auto mz = rt.memzones().lookup(memzone_name(name));
  if (!mz)
    throw Error(Errc::not_found, "no mempool named '" + std::string(name) + "' in " + rt.domain_dir() +
                                     "; create it first, or check the name and --file-prefix");
  auto* h = static_cast<Header*>(mz->addr);
  wait_initialised(*mz, &h->magic, kPoolMagic, &h->version, kPoolVersion, "mempool", name);
  check_header(h, mz->len);
  Mempool pool(h, Ring::lookup(rt, memzone_name(name)), rt.domain_dir(), rt.self().id);
  pool.reclaim_dead_caches();
  return pool;
}

void Mempool::destroy(Runtime& rt, std::string_view name) {
  validate_pool_name(name);
  if (!rt.memzones().lookup(memzone_name(name)))
    throw Error(Errc::not_found, "no mempool named '" + std::string(name) + "' to destroy");
  try {
    Ring::destroy(rt, memzone_name(name));
  } catch (const Error& e) {
    if (e.code() != Errc::not_found) throw;
  }
  rt.memzones().free(memzone_name(name));
}

std::vector<Mempool> Mempool::list(Runtime& rt) {
  std::vector<Mempool> out;
  for (auto& z : rt.memzones().list()) {
    if (!z.name.starts_with(kPrefix) || z.len < sizeof(Header)) continue;
    auto* h = static_cast<Header*>(z.addr);
    if (std::atomic_ref<uint32_t>(h->magic).load(std::memory_order_acquire) != kPoolMagic) continue;
    try {
      check_header(h, z.len);
      out.push_back(Mempool(h, Ring::lookup(rt, z.name), rt.domain_dir(), rt.self().id));
    } catch (const Error& e) {
      MPOD_LOG(mempool, warning, "mempool '%s' cannot be used: %s", std::string(name_of(h)).c_str(), e.what());
    }
  }
  return out;
}

}  // namespace mpod
