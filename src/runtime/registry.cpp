#include "registry.hpp"

#include "../os/dir.hpp"

#include <fcntl.h>

#include <cerrno>
#include <map>
#include <mutex>
#include <sstream>

#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod::registry {

std::string procs_dir(const std::string& domain_dir) { return domain_dir + "/procs"; }

namespace {
std::mutex g_bound_mu;
std::map<std::string, os::Dir> g_bound;  // path -> the domain directory opened and checked at start-up
}  // namespace

void bind_domain(const std::string& path, const os::Dir& domain) {
  std::lock_guard g(g_bound_mu);
  g_bound[path] = domain;
}

void unbind_domain(const std::string& path) noexcept {
  std::lock_guard g(g_bound_mu);
  g_bound.erase(path);
}

std::optional<os::Dir> try_open_domain_subdir(const std::string& domain_dir, const std::string& name) {
  std::optional<os::Dir> domain;
  {
    std::lock_guard g(g_bound_mu);
    if (auto it = g_bound.find(domain_dir); it != g_bound.end()) domain = it->second;
  }
  if (domain) return domain->try_open_subdir(name, os::DirRule::joined());
  return os::Dir::try_open(domain_dir + "/" + name, os::DirRule::joined());
}

os::Dir open_domain_subdir(const std::string& domain_dir, const std::string& name) {
  if (auto d = try_open_domain_subdir(domain_dir, name)) return std::move(*d);
  throw Error(Errc::not_found, "directory " + domain_dir + "/" + name + " does not exist; is the primary running?",
              domain_dir + "/" + name, ENOENT);
}

os::Dir open_procs(const std::string& domain_dir) { return open_domain_subdir(domain_dir, "procs"); }

namespace {
std::string serialize(const ProcessInfo& p) {
  std::ostringstream o;
  o << "id=" << p.id.hex() << "\nrole=" << role_name(p.role) << "\npid=" << p.pid
    << "\npid_ns=" << p.pid_ns << "\nhostname=" << p.hostname << "\nstarted_ns=" << p.started_ns
    << "\n";
  return o.str();
}

std::optional<ProcessInfo> parse(const std::string& text) {
  ProcessInfo p;
  bool have_id = false, have_role = false;
  std::istringstream in(text);
  std::string line;
  try {
    while (std::getline(in, line)) {
      auto eq = line.find('=');
      if (eq == std::string::npos) continue;
      std::string k = line.substr(0, eq), v = line.substr(eq + 1);
      if (k == "id") {
        auto id = ProcessId::parse(v);
        if (!id) return std::nullopt;
        p.id = *id;
        have_id = true;
      } else if (k == "role") {
        if (v != "primary" && v != "secondary") return std::nullopt;
        p.role = v == "primary" ? Role::primary : Role::secondary;
        have_role = true;
      } else if (k == "pid") {
        p.pid = static_cast<int32_t>(std::stol(v));
      } else if (k == "pid_ns") {
        p.pid_ns = std::stoull(v);
      } else if (k == "hostname") {
        p.hostname = v;
      } else if (k == "started_ns") {
        p.started_ns = std::stoull(v);
      }
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!have_id || !have_role) return std::nullopt;
  return p;
}

// Whether an open registration's owner is alive (holds its lock); nullopt
// if it is unlocked and already unlinked: its owner unregistered (or a
// reaper removed it) since it was listed or opened, an exit, not a death.
std::optional<bool> test_liveness(int fd, const std::string& path) {
  if (os::is_locked_by_other(fd, os::LockKind::shared, path)) return true;
  if (os::is_unlinked(fd, path)) return std::nullopt;
  return false;
}

// A registration is a few hundred bytes: anything longer is not one.
constexpr uint64_t kMaxRegistrationBytes = 4096;

// Opens and parses one registration, recording its owner (the uid it runs
// as: only that uid, or root, can make a file that uid owns). Throws for an
// entry that is not a registration (a planted FIFO, link or directory, junk,
// an oversized file); an empty result if it vanished.
std::optional<ProcessInfo> read_registration(const os::Dir& procs, const std::string& name, os::Fd* keep = nullptr) {
  os::Fd fd = procs.try_open(name, O_RDONLY, os::kAnyOwner);
  if (!fd) return std::nullopt;
  const std::string path = procs.path_of(name);
  // At most one byte past the cap, however the file grows meanwhile.
  std::string text(kMaxRegistrationBytes + 1, '\0');
  const size_t n = os::read_up_to(fd.get(), text.data(), text.size(), path);
  if (n > kMaxRegistrationBytes) throw Error(Errc::corrupt, "it is larger than any registration", path);
  text.resize(n);
  auto info = parse(text);
  if (!info) throw Error(Errc::corrupt, "its contents are not a registration", path);
  if (info->id.hex() != name) throw Error(Errc::corrupt, "it names another process id", path);
  info->uid = os::file_owner(fd.get(), path);
  if (keep) *keep = std::move(fd);
  return info;
}

// Reads and liveness-tests one registration. nullopt if it vanished; throws
// for an entry that is not a registration (read_registration).
std::optional<ProcessInfo> read_entry_checked(const os::Dir& procs, const std::string& name) {
  os::Fd fd;
  std::optional<ProcessInfo> info = read_registration(procs, name, &fd);
  if (!info) return std::nullopt;
  const auto alive = test_liveness(fd.get(), procs.path_of(name));
  if (!alive) return std::nullopt;
  info->alive = *alive;
  return info;
}

// The same, nullopt for an entry that is not a registration (logged).
std::optional<ProcessInfo> read_entry(const os::Dir& procs, const std::string& name) {
  try {
    return read_entry_checked(procs, name);
  } catch (const Error& e) {
    MPOD_LOG(runtime, warning, "ignoring %s in the process registry: %s; if no process of this domain uses it, "
             "remove it", procs.path_of(name).c_str(), e.what());
    return std::nullopt;
  }
}

constexpr double kStaleTempSeconds = 60;

bool is_registration_name(const std::string& name) { return ProcessId::parse(name).has_value(); }
}  // namespace

Registration Registration::create(const std::string& domain_dir, Role role) {
  const os::Dir procs = open_procs(domain_dir);
  Registration r;
  r.info_.role = role;
  r.info_.pid = os::current_pid();
  r.info_.pid_ns = os::pid_namespace_inode();
  r.info_.hostname = os::host_name();
  r.info_.started_ns = os::realtime_ns();
  r.info_.uid = os::effective_uid();
  // Members of the group read registrations; only their owner writes them.
  const auto share = os::Share::read;
  // A collision of 128 random bits is not expected, but the filesystem is what
  // guarantees uniqueness, so a collision just means: draw again.
  for (int attempt = 0;; ++attempt) {
    r.info_.id = ProcessId::random();
    const std::string final_name = r.info_.id.hex();
    // Preferred: an unnamed file, locked and filled before it gets its name,
    // so nobody can see it unlocked or half-written and a crash leaves nothing.
    os::Fd fd = procs.create_unnamed(0600, share);
    std::string tmp_name;
    if (!fd) {
      // Filesystems without O_TMPFILE: a dot-name that reapers leave alone until it is stale.
      tmp_name = "." + final_name + ".new";
      fd = procs.try_create(tmp_name, O_RDWR, 0600, share);
      if (!fd) continue;
    }
    const std::string lock_name = procs.path_of(tmp_name.empty() ? final_name : tmp_name);
    if (!os::try_lock(fd.get(), os::LockKind::exclusive, lock_name)) {
      if (!tmp_name.empty()) procs.remove(tmp_name);
      throw Error(Errc::system, "cannot lock the new registration in " + procs.path(), procs.path());
    }
    r.info_.alive = true;
    std::string text = serialize(r.info_);
    try {
      os::write_all(fd.get(), text.data(), text.size(), lock_name);
      if (tmp_name.empty()) procs.link_unnamed(fd.get(), final_name);
      else procs.rename_noreplace(tmp_name, final_name);  // one link throughout: never mistaken for a planted one
    } catch (const Error& e) {
      if (!tmp_name.empty()) procs.remove(tmp_name);
      if (e.code() == Errc::already_exists && attempt < 8) continue;
      throw;
    }
    r.procs_ = procs;
    r.fd_ = std::move(fd);
    MPOD_LOG(runtime, info, "registered as %s %s (pid %d in pid ns %llu, host %s)", role_name(role),
             r.info_.id.hex().c_str(), r.info_.pid, static_cast<unsigned long long>(r.info_.pid_ns),
             r.info_.hostname.c_str());
    return r;
  }
}

Registration& Registration::operator=(Registration&& o) noexcept {
  if (this != &o) {
    unregister();
    info_ = std::move(o.info_);
    procs_ = std::move(o.procs_);
    fd_ = std::move(o.fd_);
  }
  return *this;
}

Registration::~Registration() { unregister(); }

void Registration::unregister() noexcept {
  if (!fd_) return;
  try {
    procs_.remove(info_.id.hex());
  } catch (const Error& e) {
    MPOD_LOG(runtime, warning, "could not remove registration: %s", e.what());
  }
  fd_.reset();
}

std::vector<ProcessInfo> list(const std::string& domain_dir) {
  std::vector<ProcessInfo> out;
  const os::Dir procs = open_procs(domain_dir);
  for (auto& name : procs.list()) {
    if (!is_registration_name(name)) continue;
    if (auto p = read_entry(procs, name)) out.push_back(std::move(*p));
  }
  return out;
}

std::optional<ProcessInfo> find(const std::string& domain_dir, const ProcessId& id) {
  auto procs = try_open_domain_subdir(domain_dir, "procs");
  if (!procs) return std::nullopt;  // no registry (yet): nobody is registered
  return read_entry(*procs, id.hex());
}

std::optional<ProcessInfo> find_checked(const std::string& domain_dir, const ProcessId& id) {
  auto procs = try_open_domain_subdir(domain_dir, "procs");
  if (!procs) return std::nullopt;
  return read_entry_checked(*procs, id.hex());
}

bool is_alive(const std::string& domain_dir, const ProcessId& id) {
  auto p = find(domain_dir, id);
  return p && p->alive;
}

namespace {
// Reaps one entry of the registry if its owner is dead; the info of the one
// reaped, or nullopt.
std::optional<ProcessInfo> reap_entry(const os::Dir& procs, const std::string& name) {
  const std::string path = procs.path_of(name);
  if (name.starts_with(".") && name.ends_with(".new")) {
    // Fallback-path registration being written, or left by a process that
    // died writing it. Young ones may not be locked yet: leave them alone.
    if (procs.age_seconds(name) < kStaleTempSeconds) return std::nullopt;
    os::Fd fd = procs.try_open(name, O_RDONLY, os::kAnyOwner);
    if (fd && os::try_lock(fd.get(), os::LockKind::shared, path)) procs.remove(name);
    return std::nullopt;
  }
  if (!is_registration_name(name)) return std::nullopt;
  // Read-only is enough: registrations are read-only to the group. A shared
  // lock is granted only while the owner's exclusive one is not held, that
  // is, when it is dead; of several reapers, the one whose unlink succeeds
  // reaps (ids are never reused, so the name cannot come back alive).
  os::Fd fd = procs.try_open(name, O_RDONLY, os::kAnyOwner);
  if (!fd) return std::nullopt;
  if (!os::try_lock(fd.get(), os::LockKind::shared, path)) return std::nullopt;
  if (os::is_unlinked(fd.get(), path)) return std::nullopt;  // its owner left cleanly meanwhile
  std::optional<ProcessInfo> info;
  try {
    info = read_registration(procs, name);
  } catch (const Error&) {
  }
  if (!procs.remove(name)) return std::nullopt;  // another reaper was first
  ProcessInfo p;
  if (info) p = *info;
  else p.id = *ProcessId::parse(name);
  p.alive = false;
  return p;
}
}  // namespace

std::vector<ProcessInfo> reap(const std::string& domain_dir,
                              const std::function<void(const ProcessInfo&)>& on_reaped) {
  std::vector<ProcessInfo> reaped;
  const os::Dir procs = open_procs(domain_dir);
  for (auto& name : procs.list()) {
    // One entry at a time: a planted or foreign entry is logged and passed over, never stops the rest.
    std::optional<ProcessInfo> p;
    try {
      p = reap_entry(procs, name);
    } catch (const Error& e) {
      MPOD_LOG(runtime, notice, "reaping %s: %s", procs.path_of(name).c_str(), e.what());
      continue;
    }
    if (!p) continue;
    MPOD_LOG(runtime, notice, "removed registration of dead %s process %s (host %s, pid %d)",
             role_name(p->role), p->id.hex().c_str(), p->hostname.c_str(), p->pid);
    if (on_reaped) on_reaped(*p);
    reaped.push_back(std::move(*p));
  }
  return reaped;
}

ReapOne reap_one(const std::string& domain_dir, const ProcessId& id) {
  auto procs = try_open_domain_subdir(domain_dir, "procs");
  if (!procs) return ReapOne::absent;
  const std::string name = id.hex();
  if (auto p = reap_entry(*procs, name)) {
    MPOD_LOG(runtime, notice, "removed registration of dead %s process %s (host %s, pid %d)", role_name(p->role),
             name.c_str(), p->hostname.c_str(), p->pid);
    return ReapOne::reaped;
  }
  return procs->stat(name) ? ReapOne::alive : ReapOne::absent;
}

std::string describe(const ProcessInfo& p) {
  return std::string(role_name(p.role)) + " process " + p.id.short_hex() + " (host " + p.hostname +
         ", pid " + std::to_string(p.pid) + (p.alive ? ", alive)" : ", dead)");
}

std::string describe(const std::string& domain_dir, const ProcessId& id) {
  try {
    if (auto p = find(domain_dir, id)) return describe(*p);
  } catch (const Error& e) {
    return "process " + id.short_hex() + " (its registration cannot be read: " + e.what() + ")";
  }
  return "process " + id.short_hex() + " (not registered)";
}

}  // namespace mpod::registry
