// Runtime start-up and shutdown: assembles the layers for a primary or a secondary.
#include "mpod/runtime.hpp"

#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <cstring>
#include <cstdio>

#include "../ipc/channel_impl.hpp"
#include "../memory/shared_memory.hpp"
#include "../objects/mempool_caches.hpp"
#include "../objects/memzones_impl.hpp"
#include "../os/dir.hpp"
#include "../os/os.hpp"
#include "../runtime/registry.hpp"
#include "../runtime/shared_lock.hpp"
#include "shared_config.hpp"

namespace mpod {

namespace {
std::atomic<bool> g_runtime_live{false};

constexpr uint64_t kDefaultMemoryMb = 64;
// A primary that holds the lock but is still building the config is given
// this long even when --wait-primary is 0: it is alive and almost ready.
constexpr uint64_t kInitGraceNs = 30'000'000'000ull;
// How long a would-be primary retries a lock that no live primary holds.
constexpr uint64_t kLockRetryNs = 2'000'000'000ull;

std::string seconds_text(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", s);
  return b;
}

std::string hex_addr(uint64_t a) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(a));
  return b;
}

// The lock file. Byte 0, the primary lock: held exclusively by the primary
// for its whole life, and by the last process out while it removes the
// memory. Byte 1, the exit lock: taken by each process leaving, one at a
// time, while it decides whether it is the last (clean_up_if_last). Never
// removed, so every process agrees on one inode.
constexpr const char* kLockName = "lock";
constexpr off_t kPrimaryLockByte = 0, kExitLockByte = 1;
constexpr uint64_t kExitLockWaitNs = 10'000'000'000ull;  // another leaving process holds it for milliseconds
constexpr const char* kConfigName = "config";
constexpr const char* kNewConfigName = "config.new";

ProcessId id_from(const uint8_t* bytes) {
  ProcessId id;
  std::memcpy(id.bytes.data(), bytes, 16);
  return id;
}

// What <domain>/config says right now, without mapping it.
struct ConfigPeek {
  bool present = false;   // the file exists (it is only ever renamed into place complete)
  bool ours = false;      // magic and version match this program
  bool ready = false;
  ProcessId primary;
};

ConfigPeek peek_config(const os::Dir& domain) {
  ConfigPeek peek;
  os::Fd fd = domain.try_open(kConfigName, O_RDONLY, domain.owner());
  ConfigHeader h;
  if (!fd) return peek;
  peek.present = true;
  if (!os::read_exact_at(fd.get(), &h, sizeof h, 0, domain.path_of(kConfigName))) return peek;
  peek.ours = h.magic == SharedConfig::kMagic && h.version == SharedConfig::kVersion;
  peek.ready = h.ready.load() == 1;
  peek.primary = id_from(h.primary_id);
  return peek;
}

class RuntimeImpl final : public Runtime {
 public:
  explicit RuntimeImpl(const Options& o) : options_(o) {}
  ~RuntimeImpl() override;

  void start();

  Role role() const noexcept override { return registration_.info().role; }
  const ProcessInfo& self() const noexcept override { return registration_.info(); }
  const Options& options() const noexcept override { return options_; }
  const std::string& domain_dir() const noexcept override { return domain_; }
  std::vector<ProcessInfo> processes() const override { return registry::list(domain_); }
  std::vector<MemoryUsage> memory() const override;
  Memzones& memzones() noexcept override { return *memzones_; }
  Channel& channel() noexcept override { return *channel_; }
  void* base_addr() const noexcept override { return reinterpret_cast<void*>(base_va_); }
  uint64_t va_len() const noexcept override { return va_len_; }
  size_t reap_dead() override { return reap_dead_processes().size(); }
  const detail::ClaimOwners& claim_owners() const noexcept override { return *claim_owners_; }
  std::vector<ProcessInfo> reap_dead_processes();

 private:
  void prepare_dirs();
  bool open_domain(bool may_create);
  bool try_become_primary();
  std::optional<ProcessInfo> live_primary() const;
  // Whether the primary named by the config is registered and alive; throws
  // corrupt, naming the file, if its registration is damaged.
  bool primary_registration_alive(const ProcessId& primary) const;
  void start_primary();
  void wait_for_primary();
  void start_secondary();
  void map_config(os::Fd fd, const std::string& path, bool creating);
  void make_locks();
  void clean_up_if_last();
  std::vector<ProcessInfo> live_others() const;
  MemoryParams memory_params() const;
  void start_channel();
  // Removes what the dead process `p` left: registration, page tables, channel endpoints.
  bool reap_one(const ProcessInfo& p);

  Options options_;
  std::string domain_;   // its path, for messages and the public API
  os::Dir runtime_dir_;  // --runtime-dir, checked as a volume
  os::Dir domain_dir_;   // checked; every file of the domain is reached through it
  os::Fd lock_fd_;  // primary: holds the primary lock
  os::Fd watch_lock_;  // primary, until its channel takes it: the watch lock (PeerWatch)
  bool attached_ = false;  // start() completed
  Role role_ = Role::secondary;
  registry::Registration registration_;
  os::Fd config_fd_;
  std::string config_path_;
  SharedConfig* config_ = nullptr;
  uint64_t base_va_ = 0, va_len_ = 0;  // this process's copy, taken when the config was checked
  std::unique_ptr<SharedLock> memory_lock_, memzone_lock_;
  std::unique_ptr<SharedMemory> memory_;
  // Made with the config mapped (primary and secondary), before anything
  // can look a ring up; given back at shutdown.
  std::unique_ptr<detail::ClaimOwners> claim_owners_ = std::make_unique<detail::ClaimOwners>();
  std::unique_ptr<MemzonesImpl> memzones_;
  std::unique_ptr<ChannelImpl> channel_;
};

void RuntimeImpl::prepare_dirs() {
  // Before anything is created: every file and socket from here on is the group's too.
  if (!options_.group.empty()) os::set_shared_group(os::resolve_group(options_.group));
  const std::string& prefix = options_.file_prefix;
  if (prefix.empty() || prefix == "." || prefix == ".." || prefix.find('/') != std::string::npos)
    throw Error(Errc::invalid_argument, "--file-prefix=" + prefix + " must be a plain name, without '/'");
  std::string dir = options_.runtime_dir;
  if (dir.empty()) {
    dir = default_runtime_dir();
    os::make_dirs(dir, 0700);
  } else {
    // An explicit directory is a shared volume: it must already exist.
    os::check_writable_dir(dir, "--runtime-dir");
  }
  runtime_dir_ = os::Dir::open(dir, os::DirRule::volume());
  domain_ = dir + "/" + prefix;
  open_domain(options_.proc_type != ProcType::secondary);
}

// Opens the domain directory; a process that may become the primary creates
// it, a secondary waits for the primary to (wait_for_primary). False if it
// does not exist yet.
bool RuntimeImpl::open_domain(bool may_create) {
  if (domain_dir_.valid()) return true;
  std::optional<os::Dir> d;
  try {
    d = runtime_dir_.try_open_subdir(options_.file_prefix, os::DirRule::joined());
  } catch (const Error& e) {
    if (e.sys_errno() != EACCES) throw;
    // Another user's domain: say whose, and how it is shared.
    const auto st = runtime_dir_.stat(options_.file_prefix);
    if (!st) throw;
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", unsigned(st->st_mode & 07777));
    const bool shared = (st->st_mode & S_IRWXG) == S_IRWXG;
    throw Error(Errc::permission_denied,
                "the domain " + domain_ + " belongs to uid " + std::to_string(st->st_uid) + ", group " +
                    std::to_string(st->st_gid) + " (mode " + mode + "), and this process runs as uid " +
                    std::to_string(os::effective_uid()) +
                    (shared ? ", not in that group: its primary shares it with group " + std::to_string(st->st_gid) +
                                  " only; run this process as a member of that group, with --group=" +
                                  std::to_string(st->st_gid) + ", or use another --file-prefix"
                            : ": only its owner's processes may use it; run this process as uid " +
                                  std::to_string(st->st_uid) + ", have its primary share it with --group=GROUP "
                                  "(a group this user is in), or use another --file-prefix"),
                domain_, EACCES);
  }
  if (!d && may_create)
    d = runtime_dir_.make_subdir(options_.file_prefix, 0700, os::DirRule::owned_by(os::effective_uid()));
  if (!d) return false;
  domain_dir_ = std::move(*d);
  registry::bind_domain(domain_, domain_dir_);
  return true;
}

MemoryParams RuntimeImpl::memory_params() const {
  MemoryParams p;
  p.domain = domain_dir_;
  p.file_prefix = options_.file_prefix;
  p.huge_dir = options_.huge_dir;
  p.no_huge = options_.no_huge;
  p.initial_bytes = (options_.memory_mb ? options_.memory_mb : kDefaultMemoryMb) << 20;
  p.base_va = options_.base_virtaddr;
  p.self = registration_.info().id;
  return p;
}

void RuntimeImpl::start_channel() {
  PeerWatch::Hooks reaping;
  reaping.reap = [this](const ProcessInfo& p) { return reap_one(p); };
  reaping.sweep = [this] { return reap_dead_processes(); };
  channel_ = std::make_unique<ChannelImpl>(domain_, registration_.info(), 0600, std::move(watch_lock_), std::move(reaping));
  // Every process answers mpod.ping (used by `mpod ping` and liveness checks) with nothing.
  channel_->register_action("mpod.ping", [](Incoming& in) { in.reply(std::span<const uint8_t>{}); });
}

bool RuntimeImpl::reap_one(const ProcessInfo& p) {
  switch (registry::reap_one(domain_, p.id)) {
    case registry::ReapOne::alive: return false;
    case registry::ReapOne::reaped:
    case registry::ReapOne::absent: break;
  }
  // Its other files go whether or not it was registered still: they are named by its id alone.
  SharedMemory::remove_process_files(domain_dir_, p.id);
  ChannelImpl::remove_endpoint(domain_, p.id);
  claim_owners_->release_dead(p.id);
  return true;
}

std::vector<ProcessInfo> RuntimeImpl::live_others() const {
  std::vector<ProcessInfo> out;
  for (auto& p : registry::list(domain_))
    if (p.alive && !(p.id == registration_.info().id)) out.push_back(p);
  return out;
}

std::optional<ProcessInfo> RuntimeImpl::live_primary() const {
  ConfigPeek peek = peek_config(domain_dir_);
  if (!peek.ours) return std::nullopt;
  auto p = registry::find(domain_, peek.primary);
  if (p && p->alive) return p;
  return std::nullopt;
}

bool RuntimeImpl::try_become_primary() {
  const uid_t me = os::effective_uid();
  if (domain_dir_.owner() != me) {
    if (options_.proc_type == ProcType::automatic) return false;  // its owner's processes are the primaries
    throw Error(Errc::untrusted,
                "cannot be the primary of prefix '" + options_.file_prefix + "': " + domain_ + " belongs to uid " +
                    std::to_string(domain_dir_.owner()) + " and only its owner may create the domain's files there; "
                    "run the primary as that uid, start this process as a secondary, or, if no process uses it, remove " +
                    domain_,
                domain_);
  }
  // Everything the primary makes is checked as its own: a planted entry is refused, never followed.
  const auto own = os::DirRule::owned_by(me);
  domain_dir_.make_subdir("procs", 0700, own);
  const os::Dir mp = domain_dir_.make_subdir("mp", 0700, own);
  // Created here, by the domain's owner, so every member may trust and lock it.
  os::Fd watch_lock = mp.open_or_create(PeerWatch::kLockName, O_RDWR, 0600, me);
  os::Fd fd = domain_dir_.open_or_create(kLockName, O_RDWR, 0600, me);
  const std::string path = domain_dir_.path_of(kLockName);
  // The lock may be held briefly by an exiting process cleaning up, or by a
  // primary still building its config: retry a little unless a live primary holds it.
  const uint64_t deadline = os::monotonic_ns() + kLockRetryNs;
  while (!os::try_lock(fd.get(), os::LockKind::exclusive, path, kPrimaryLockByte, 1)) {
    if (live_primary() || os::monotonic_ns() >= deadline) return false;
    os::sleep_ns(2'000'000);
  }
  lock_fd_ = std::move(fd);
  watch_lock_ = std::move(watch_lock);
  return true;
}

void RuntimeImpl::map_config(os::Fd fd, const std::string& path, bool creating) {
  const uint64_t size = os::file_size(fd.get(), path);
  if (!creating) {
    // Checked on a private copy of its header and layout: what is checked is what is used below.
    ConfigPrefix copy;
    const size_t have = os::read_up_to(fd.get(), &copy, kConfigPrefixBytes, path);
    const HeaderCheck check = check_config(&copy, have, size);
    if (check.code == Errc::version_mismatch)
      throw Error(Errc::version_mismatch,
                  "shared config " + path + " has " + check.why + "; run the same mpod version in every process of a prefix",
                  path);
    if (!check.why.empty())
      throw Error(Errc::corrupt,
                  "shared config " + path + " is corrupt (" + check.why + "); stop every process of prefix '" +
                      options_.file_prefix + "' and restart the primary, which recreates it",
                  path);
    base_va_ = copy.header.base_va;
    va_len_ = copy.header.va_len;
  }
  config_ = static_cast<SharedConfig*>(os::map_shared(sizeof(SharedConfig), fd.get(), path));
  config_fd_ = std::move(fd);
  config_path_ = path;
}

void RuntimeImpl::make_locks() {
  const ProcessId& self = registration_.info().id;
  memory_lock_ = std::make_unique<SharedLock>(config_fd_.get(), SharedConfig::kMemoryLockByte,
                                              &config_->memory.lock, config_path_, domain_, self, "memory");
  memzone_lock_ = std::make_unique<SharedLock>(config_fd_.get(), SharedConfig::kMemzoneLockByte,
                                               &config_->memzones.lock, config_path_, domain_, self,
                                               "memzone table");
  memory_->set_lock(memory_lock_.get());
  memzones_ = std::make_unique<MemzonesImpl>(config_->memzones, *memzone_lock_, *memory_, self);
  claim_owners_ = std::make_unique<detail::ClaimOwners>(&config_->claim_owners, domain_, self);
}

void RuntimeImpl::start_primary() {
  registration_ = registry::Registration::create(domain_, Role::primary);
  reap_dead();
  if (auto others = live_others(); !others.empty()) {
    std::string names;
    for (auto& p : others) names += "\n  " + registry::describe(p);
    throw Error(Errc::busy,
                std::to_string(others.size()) + " process(es) of an earlier primary still use prefix '" +
                    options_.file_prefix + "' in " + domain_ + ":" + names +
                    "\nstop them before starting a new primary, or use another --file-prefix",
                domain_);
  }
  // Secondaries start only once the config is ready: by then the primary watches.
  if (!os::try_lock(watch_lock_.get(), os::LockKind::exclusive, domain_dir_.path_of("mp/watch.lock")))
    throw Error(Errc::busy,
                "a process of an earlier primary of prefix '" + options_.file_prefix + "' still holds " + domain_ +
                    "/mp/watch.lock; stop it before starting a new primary, or use another --file-prefix",
                domain_);
  // Nobody uses the old memory: clear it away and build afresh.
  domain_dir_.remove(kConfigName);
  SharedMemory::remove_stale_files(domain_dir_, options_.file_prefix, options_.huge_dir);

  domain_dir_.remove(kNewConfigName);
  // Private until complete: nobody writes into a config that is being built.
  os::Fd fd = domain_dir_.create(kNewConfigName, O_RDWR, 0600, os::Share::none);
  const std::string tmp = domain_dir_.path_of(kNewConfigName);
  try {
    os::truncate_file(fd.get(), sizeof(SharedConfig), tmp);
    // Backed now: on a filesystem that fills up later, a page first touched
    // then would be a SIGBUS in every process that maps the config.
    os::allocate_file(fd.get(), 0, sizeof(SharedConfig), tmp);
    map_config(std::move(fd), tmp, true);
    auto& h = config_->header;
    h.magic = SharedConfig::kMagic;
    h.version = SharedConfig::kVersion;
    h.layout_size = sizeof(SharedConfig);
    std::memcpy(h.primary_id, registration_.info().id.bytes.data(), 16);
    h.created_ns = os::realtime_ns();
    h.no_huge = options_.no_huge;
    memory_ = SharedMemory::create(memory_params(), config_->memory, &base_va_, &va_len_);
    h.base_va = base_va_;
    h.va_len = va_len_;
    h.checksum = config_checksum(*config_);
    h.ready.store(1, std::memory_order_release);
    make_locks();
    os::share_created(config_fd_.get(), tmp, 0600, os::Share::read_write);
    domain_dir_.rename_noreplace(kNewConfigName, kConfigName);
    config_path_ = domain_dir_.path_of(kConfigName);
  } catch (...) {
    if (memory_) memory_->remove_files();
    memory_.reset();
    try {
      domain_dir_.remove(kNewConfigName);
    } catch (const Error& e) {
      MPOD_LOG(runtime, warning, "%s", e.what());
    }
    throw;
  }
  MPOD_LOG(runtime, info, "primary ready: %s, %llu MB at %s", domain_.c_str(),
           static_cast<unsigned long long>(memory_params().initial_bytes >> 20),
           hex_addr(base_va_).c_str());
}

bool RuntimeImpl::primary_registration_alive(const ProcessId& primary) const {
  try {
    auto p = registry::find_checked(domain_, primary);
    return p && p->alive;
  } catch (const Error& e) {
    const std::string file = registry::procs_dir(domain_) + "/" + primary.hex();
    throw Error(Errc::corrupt,
                "cannot attach to prefix '" + options_.file_prefix + "': the registration of its primary, " +
                    file + ", is damaged (" + e.what() +
                    "); stop the primary and every process of the domain, remove the file, and start again",
                file);
  }
}

void RuntimeImpl::wait_for_primary() {
  const uint64_t start = os::monotonic_ns();
  const uint64_t wait_ns = static_cast<uint64_t>(options_.wait_primary_s * 1e9);
  bool logged = false;
  for (;;) {
    bool alive = false;
    if (open_domain(false))
      if (os::Fd fd = domain_dir_.try_open(kLockName, O_RDONLY, domain_dir_.owner()))
        alive = os::is_locked_by_other(fd.get(), os::LockKind::shared, domain_dir_.path_of(kLockName),
                                       kPrimaryLockByte, 1);
    if (alive) {
      ConfigPeek peek = peek_config(domain_dir_);
      // Only the config of the primary that is alive now will do. Its
      // registration exists before its config is ready: if it cannot be
      // read, waiting will not mend it.
      if (peek.ours && peek.ready && primary_registration_alive(peek.primary)) return;
      // A config of another layout or a corrupt one: let map_config say precisely what is wrong.
      if (peek.present && !peek.ours) return;
    }
    const uint64_t waited = os::monotonic_ns() - start;
    if (waited >= wait_ns && !(alive && waited < kInitGraceNs)) {
      throw Error(alive ? Errc::timed_out : Errc::not_found,
                  alive ? "the primary of prefix '" + options_.file_prefix + "' in " + domain_ +
                              " holds the lock but did not finish starting within " +
                              std::to_string(kInitGraceNs / 1'000'000'000) + " s"
                        : "no primary is running for prefix '" + options_.file_prefix + "' in " +
                              domain_ + (wait_ns ? " (waited " + seconds_text(options_.wait_primary_s) + " s)" : "") +
                              "; start the primary first, pass --wait-primary=SECONDS to wait for "
                              "it, or check --file-prefix and --runtime-dir",
                  domain_);
    }
    if (!logged) {
      MPOD_LOG(runtime, notice, "waiting for the primary of prefix '%s' in %s", options_.file_prefix.c_str(),
               domain_.c_str());
      logged = true;
    }
    os::sleep_ns(5'000'000);
  }
}

void RuntimeImpl::start_secondary() {
  wait_for_primary();
  registration_ = registry::Registration::create(domain_, Role::secondary);
  // Admitted by the watcher before anything more is made: a process it
  // refuses leaves nothing, and from here on its death is seen and reaped.
  // (The dead are reaped by the watcher, not by each newcomer: that cost
  // every attach a pass over the whole registry.)
  start_channel();
  os::Fd fd = domain_dir_.try_open(kConfigName, O_RDWR, domain_dir_.owner());
  if (!fd)
    throw Error(Errc::not_found, "the primary of prefix '" + options_.file_prefix +
                                     "' exited while this process was attaching; start it again",
                domain_dir_.path_of(kConfigName), ENOENT);
  map_config(std::move(fd), domain_dir_.path_of(kConfigName), false);
  memory_ = SharedMemory::attach(memory_params(), config_->memory, base_va_, va_len_);
  make_locks();
  MPOD_LOG(runtime, info, "secondary attached to %s", domain_.c_str());
}

void RuntimeImpl::start() {
  os::install_bus_guard();  // a damaged shared file costs pages of memory, not this process
  prepare_dirs();
  switch (options_.proc_type) {
    case ProcType::primary:
      if (!try_become_primary()) {
        auto p = live_primary();
        std::string who = p ? registry::describe(*p) : "another primary, still starting";
        throw Error(Errc::already_exists,
                    "a primary is already running for prefix '" + options_.file_prefix + "' in " +
                        domain_ + ": " + who +
                        "; start this process with --proc-type=secondary (or auto), or use another --file-prefix",
                    domain_dir_.path_of(kLockName));
      }
      start_primary();
      break;
    case ProcType::secondary:
      start_secondary();
      break;
    case ProcType::automatic:
      // The lock decides: exactly one process can hold it, so auto never makes a second primary.
      if (try_become_primary()) start_primary();
      else start_secondary();
      break;
  }
  if (!channel_) start_channel();
  role_ = registration_.info().role;
  attached_ = true;
  log::set_process_tag(registration_.info().id.short_hex());
}

std::vector<MemoryUsage> RuntimeImpl::memory() const {
  auto usage = memory_->usage();
  for (uint32_t i = 0; i < usage.size(); ++i) usage[i].used_bytes = memzones_->used_bytes(i);
  return usage;
}

std::vector<ProcessInfo> RuntimeImpl::reap_dead_processes() {
  auto reaped = registry::reap(domain_, [this](const ProcessInfo& p) {
    SharedMemory::remove_process_files(domain_dir_, p.id);
    ChannelImpl::remove_endpoint(domain_, p.id);
    claim_owners_->release_dead(p.id);
  });
  // What no registration names any more: left by a reaper killed half-way.
  // (Listed before the registry is read, so nothing made since is taken.)
  ChannelImpl::remove_orphan_endpoints(domain_);
  try {
    const os::Dir procs = registry::open_procs(domain_);
    SharedMemory::remove_orphan_process_files(domain_dir_, [&](const ProcessId& id) { return procs.stat(id.hex()).has_value(); });
  } catch (const Error& e) {
    MPOD_LOG(runtime, info, "sweeping the files of unregistered processes: %s", e.what());
  }
  return reaped;
}

RuntimeImpl::~RuntimeImpl() {
  // Release what this process owns: its channel, mappings, local fbarrays,
  // locks on page files, and its registration. Mempool caches first: they
  // hold objects other processes need back.
  if (memzones_ && attached_) release_process_caches(*this);
  // Memory set up but start() failed later (say, binding the channel): still
  // the last one out removes it, so a failed start leaves no hugepages behind.
  const bool had_memory = memory_ != nullptr;
  channel_.reset();
  memzones_.reset();
  memory_.reset();
  memory_lock_.reset();
  memzone_lock_.reset();
  claim_owners_.reset();  // the slot goes back before the config is unmapped
  if (config_) os::unmap(config_, sizeof(SharedConfig));
  config_fd_.reset();
  registration_.unregister();
  if (attached_ || had_memory) {
    try {
      clean_up_if_last();
    } catch (const Error& e) {
      MPOD_LOG(runtime, warning, "shutdown: %s", e.what());
    }
  }
  lock_fd_.reset();
  if (domain_dir_.valid()) registry::unbind_domain(domain_);
  if (const uint64_t lost = os::bus_faults_recovered())
    MPOD_LOG(runtime, warning, "shutdown: %llu page(s) of shared files in %s were lost while this process ran (a file "
             "was truncated, or its filesystem was full); it went on with private zero pages in their place. Check "
             "who writes to the runtime directory",
             static_cast<unsigned long long>(lost), domain_.c_str());
  g_runtime_live.store(false);
}

void RuntimeImpl::clean_up_if_last() {
  // The last process out removes the domain's memory, so hugepages do not
  // leak after a primary left its memory to secondaries. Holding the primary
  // lock while doing it guarantees no primary starts meanwhile.
  //
  // Leaving processes decide one at a time, under the exit lock, each after
  // it unregistered, and each lets go of the primary lock no later than of
  // the exit lock (closing lock_fd_ drops both at once). So of a primary and
  // a secondary leaving together, whichever decides second sees the other
  // gone: the primary counts no live process, or the secondary finds the
  // primary lock free. (Without it, each could find the other still there
  // and both leave the memory behind.)
  const std::string path = domain_dir_.path_of(kLockName);
  if (!lock_fd_) lock_fd_ = domain_dir_.open(kLockName, O_RDWR, domain_dir_.owner());
  const uint64_t give_up = os::monotonic_ns() + kExitLockWaitNs;
  while (!os::try_lock(lock_fd_.get(), os::LockKind::exclusive, path, kExitLockByte, 1)) {
    if (os::monotonic_ns() >= give_up) {
      MPOD_LOG(runtime, warning, "shutdown: another process held the exit lock of %s for %llu s; not checking "
               "whether this process is the last (if it is, run mpod serve with this prefix once to free the memory)",
               path.c_str(), static_cast<unsigned long long>(kExitLockWaitNs / 1'000'000'000));
      return;
    }
    os::sleep_ns(1'000'000);
  }
  if (role_ != Role::primary && !os::try_lock(lock_fd_.get(), os::LockKind::exclusive, path, kPrimaryLockByte, 1))
    return;  // a primary is alive: it, or a process after it, is the last out
  reap_dead();
  size_t live = 0;
  for (auto& p : registry::list(domain_)) live += p.alive;
  if (live > 0) {
    if (role_ == Role::primary)
      MPOD_LOG(runtime, notice, "primary exiting; leaving the shared memory of '%s' to %zu live process(es)",
               options_.file_prefix.c_str(), live);
    return;
  }
  // Config first, so nobody starts attaching to memory that is going away.
  domain_dir_.remove(kConfigName);
  SharedMemory::remove_stale_files(domain_dir_, options_.file_prefix, options_.huge_dir);
  MPOD_LOG(runtime, info, "last process of '%s' out: removed its shared memory", options_.file_prefix.c_str());
}

}  // namespace

std::unique_ptr<Runtime> Runtime::start(const Options& options) {
  if (g_runtime_live.exchange(true))
    throw Error(Errc::busy, "an mpod::Runtime is already live in this process; shut it down first");
  std::unique_ptr<RuntimeImpl> rt;
  try {
    rt = std::make_unique<RuntimeImpl>(options);
    rt->start();
  } catch (...) {
    rt.reset();  // its destructor releases whatever was taken
    g_runtime_live.store(false);
    throw;
  }
  return rt;
}

std::unique_ptr<Runtime> Runtime::start(int argc, char** argv, int* first_app_arg) {
  Options o;
  int first = parse_options(argc, argv, o);
  if (first_app_arg) *first_app_arg = first;
  return start(o);
}

}  // namespace mpod
