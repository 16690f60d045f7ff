#include "registry.hpp"

#include <fcntl.h>

#include <cerrno>
#include <sstream>

#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod::registry {

std::string procs_dir(const std::string& domain_dir) { return domain_dir + "/procs"; }

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

// Reads and liveness-tests one registration. nullopt if it vanished or is unreadable.
std::optional<ProcessInfo> read_entry(const std::string& path) {
  os::Fd fd = os::try_open_file(path, O_RDONLY);
  if (!fd) return std::nullopt;
  auto info = parse(os::read_all(fd.get(), path));
  if (!info) {
    MPOD_LOG(runtime, warning, "ignoring unreadable registration %s", path.c_str());
    return std::nullopt;
  }
  const auto alive = test_liveness(fd.get(), path);
  if (!alive) return std::nullopt;
  info->alive = *alive;
  return info;
}

constexpr double kStaleTempSeconds = 60;

bool is_registration_name(const std::string& name) { return ProcessId::parse(name).has_value(); }
}  // namespace

Registration Registration::create(const std::string& domain_dir, Role role) {
  std::string dir = procs_dir(domain_dir);
  Registration r;
  r.info_.role = role;
  r.info_.pid = os::current_pid();
  r.info_.pid_ns = os::pid_namespace_inode();
  r.info_.hostname = os::host_name();
  r.info_.started_ns = os::realtime_ns();
  // A collision of 128 random bits is not expected, but the filesystem is what
  // guarantees uniqueness, so a collision just means: draw again.
  for (int attempt = 0;; ++attempt) {
    r.info_.id = ProcessId::random();
    const std::string final_path = dir + "/" + r.info_.id.hex();
    // Preferred: an unnamed file, locked and filled before it gets its name,
    // so nobody can see it unlocked or half-written and a crash leaves nothing.
    os::Fd fd = os::open_unnamed(dir, 0600);
    std::string tmp_path;
    if (!fd) {
      // Filesystems without O_TMPFILE: a dot-name that reapers leave alone until it is stale.
      tmp_path = dir + "/." + r.info_.id.hex() + ".new";
      fd = os::try_open_file(tmp_path, O_RDWR | O_CREAT | O_EXCL, 0600);
      if (!fd) continue;
    }
    const std::string& lock_name = tmp_path.empty() ? final_path : tmp_path;
    if (!os::try_lock(fd.get(), os::LockKind::exclusive, lock_name)) {
      if (!tmp_path.empty()) os::remove_file(tmp_path);
      throw Error(Errc::system, "cannot lock the new registration in " + dir, dir);
    }
    r.info_.alive = true;
    std::string text = serialize(r.info_);
    try {
      os::write_all(fd.get(), text.data(), text.size(), lock_name);
      if (tmp_path.empty()) os::link_unnamed(fd.get(), final_path);
      else os::link_file(tmp_path, final_path);
    } catch (const Error& e) {
      if (!tmp_path.empty()) os::remove_file(tmp_path);
      if (e.code() == Errc::already_exists && attempt < 8) continue;
      throw;
    }
    if (!tmp_path.empty()) os::remove_file(tmp_path);
    r.path_ = final_path;
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
    path_ = std::move(o.path_);
    fd_ = std::move(o.fd_);
  }
  return *this;
}

Registration::~Registration() { unregister(); }

void Registration::unregister() noexcept {
  if (!fd_) return;
  try {
    os::remove_file(path_);
  } catch (const Error& e) {
    MPOD_LOG(runtime, warning, "could not remove registration: %s", e.what());
  }
  fd_.reset();
}

std::vector<ProcessInfo> list(const std::string& domain_dir) {
  std::vector<ProcessInfo> out;
  std::string dir = procs_dir(domain_dir);
  for (auto& name : os::list_dir(dir)) {
    if (!is_registration_name(name)) continue;
    if (auto p = read_entry(dir + "/" + name)) out.push_back(std::move(*p));
  }
  return out;
}

std::vector<ProcessInfo> Scanner::scan() {
  std::vector<ProcessInfo> out;
  size_t kept = 0;
  for (const auto& [name, e] : open_) kept += bool(e.fd);
  std::map<std::string, Entry> seen;
  for (auto& name : os::list_dir(dir_)) {
    if (!is_registration_name(name)) continue;
    const std::string path = dir_ + "/" + name;
    Entry entry;  // what an earlier scan learnt of it, if anything
    if (auto it = open_.find(name); it != open_.end()) {
      entry = std::move(it->second);
      open_.erase(it);
    }
    os::Fd scan_fd;  // this scan's descriptor of a registration not kept open
    if (!entry.info && !entry.unreadable) {  // new here: read it once
      try {
        os::Fd fd = os::try_open_file(path, O_RDONLY);
        if (!fd) continue;  // removed since the listing
        entry.info = parse(os::read_all(fd.get(), path));
        if (!entry.info) throw Error(Errc::invalid_argument, "its contents are not a registration", path);
        if (kept < max_kept_open_) {
          entry.fd = std::move(fd);
          ++kept;
        } else {
          scan_fd = std::move(fd);
        }
      } catch (const Error& e) {
        // Not a registration mpod can use (a directory, another user's
        // file, junk): remembered, so it is logged once and never stops a scan.
        MPOD_LOG(runtime, warning, "ignoring %s in the process registry: %s; if no process of this domain uses "
                 "it, remove it", path.c_str(), e.what());
        entry = Entry{};
        entry.unreadable = true;
      }
    } else if (entry.info && !entry.fd) {
      scan_fd = os::try_open_file(path, O_RDONLY);
      if (!scan_fd) continue;  // removed since the listing
    }
    if (entry.info) {
      // Gone since the listing: not reported, so a clean exit does not look like a crash.
      const auto alive = test_liveness(entry.fd ? entry.fd.get() : scan_fd.get(), path);
      if (!alive) continue;
      entry.info->alive = *alive;
      out.push_back(*entry.info);
    }
    seen.emplace(name, std::move(entry));
  }
  open_ = std::move(seen);  // what left the directory is closed here
  return out;
}

std::optional<ProcessInfo> find(const std::string& domain_dir, const ProcessId& id) {
  return read_entry(procs_dir(domain_dir) + "/" + id.hex());
}

bool is_alive(const std::string& domain_dir, const ProcessId& id) {
  auto p = find(domain_dir, id);
  return p && p->alive;
}

std::vector<ProcessInfo> reap(const std::string& domain_dir,
                              const std::function<void(const ProcessInfo&)>& on_reaped) {
  std::vector<ProcessInfo> reaped;
  std::string dir = procs_dir(domain_dir);
  for (auto& name : os::list_dir(dir)) {
    std::string path = dir + "/" + name;
    if (name.starts_with(".") && name.ends_with(".new")) {
      // Fallback-path registration being written, or left by a process that
      // died writing it. Young ones may not be locked yet: leave them alone.
      if (os::age_seconds(path) < kStaleTempSeconds) continue;
      os::Fd fd = os::try_open_file(path, O_RDWR);
      if (fd && os::try_lock(fd.get(), os::LockKind::exclusive, path)) os::remove_file(path);
      continue;
    }
    if (!is_registration_name(name)) continue;
    os::Fd fd = os::try_open_file(path, O_RDWR);
    if (!fd) continue;
    // Holding the lock proves the owner is dead and no other reaper is here.
    if (!os::try_lock(fd.get(), os::LockKind::exclusive, path)) continue;
    auto info = read_entry(path);
    // Another reaper may have removed and we may have locked an unlinked inode: harmless.
    if (!os::remove_file(path)) continue;
    ProcessInfo p;
    if (info) p = *info;
    else p.id = *ProcessId::parse(name);
    p.alive = false;
    MPOD_LOG(runtime, notice, "removed registration of dead %s process %s (host %s, pid %d)",
             role_name(p.role), p.id.hex().c_str(), p.hostname.c_str(), p.pid);
    if (on_reaped) on_reaped(p);
    reaped.push_back(std::move(p));
  }
  return reaped;
}

std::string describe(const ProcessInfo& p) {
  return std::string(role_name(p.role)) + " process " + p.id.short_hex() + " (host " + p.hostname +
         ", pid " + std::to_string(p.pid) + (p.alive ? ", alive)" : ", dead)");
}

std::string describe(const std::string& domain_dir, const ProcessId& id) {
  if (auto p = find(domain_dir, id)) return describe(*p);
  return "process " + id.short_hex() + " (not registered)";
}

}  // namespace mpod::registry
