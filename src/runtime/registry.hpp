// The process registry: <domain>/procs/<id>, one file per attached process.
//
// A registration is created unnamed (O_TMPFILE), locked, filled in, then
// linked to its final name (linkat fails if the name exists, so the id is
// unique by construction and nobody ever sees an unlocked or half-written
// registration; without O_TMPFILE, a temporary name is renamed into place
// without replacing). Its file's owner is the uid the process runs as, as
// the kernel recorded it (ProcessInfo::uid); the group may read it, only its
// owner write it. The owner holds an exclusive OFD lock on it until it exits;
// the kernel drops the lock if it dies. Others test liveness with F_OFD_GETLK,
// which never takes the lock and so never disturbs the owner.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../os/dir.hpp"
#include "../os/os.hpp"
#include "mpod/process.hpp"

namespace mpod::registry {

std::string procs_dir(const std::string& domain_dir);

// Binds the path of a domain to its directory as the runtime opened and
// checked it: from then on the registry, the channel and the locks of that
// domain reach procs/ and mp/ relative to it, never by walking the path
// again (a component of it could be swapped for a link since). The runtime
// binds at start and unbinds at shutdown.
void bind_domain(const std::string& domain_dir, const os::Dir& domain);
void unbind_domain(const std::string& domain_dir) noexcept;
// <domain_dir>/<name>, opened and checked (DirRule::joined) relative to the
// bound domain directory, or by path where none is bound (tools, tests).
os::Dir open_domain_subdir(const std::string& domain_dir, const std::string& name);
std::optional<os::Dir> try_open_domain_subdir(const std::string& domain_dir, const std::string& name);
// The registry directory of a domain.
os::Dir open_procs(const std::string& domain_dir);

class Registration {
 public:
  // Registers this process; the only place its PID is read.
  static Registration create(const std::string& domain_dir, Role role);
  Registration() = default;
  Registration(Registration&&) noexcept = default;
  Registration& operator=(Registration&&) noexcept;
  ~Registration();  // unregisters

  const ProcessInfo& info() const noexcept { return info_; }
  // Removes the file, then releases the lock. Safe to call twice.
  void unregister() noexcept;

 private:
  ProcessInfo info_;
  os::Dir procs_;
  os::Fd fd_;
};

// Every registration, liveness tested now. Unreadable entries are skipped with a log line.
std::vector<ProcessInfo> list(const std::string& domain_dir);
// One registration, liveness tested now; nullopt if there is none. An entry
// that is not a registration is logged and taken as none.
std::optional<ProcessInfo> find(const std::string& domain_dir, const ProcessId& id);
// The same, but throws (corrupt, or the error opening it) for an entry that
// is not a registration: for callers that must not wait on a damaged file.
std::optional<ProcessInfo> find_checked(const std::string& domain_dir, const ProcessId& id);
bool is_alive(const std::string& domain_dir, const ProcessId& id);

// Removes the registration of every dead process, calling `on_reaped` with
// each after its file is gone (to remove that process's other files).
// Concurrent reapers are safe: a reaper holds a shared lock (granted only
// while the owner's exclusive one is not) and the one whose unlink succeeds
// reaps; ids are never reused. An entry a reaper may not remove (another
// uid's, in a sticky directory) is logged and passed over.
std::vector<ProcessInfo> reap(const std::string& domain_dir,
                              const std::function<void(const ProcessInfo&)>& on_reaped = {});

// Reaps one process's registration if it is dead (the watcher, the moment
// it learns of a death). `absent`: nothing is registered under `id` (reaped
// already, or it left); `alive`: its lock is still held (a dying process
// may hold it a moment longer than its connection; try again).
enum class ReapOne { reaped, absent, alive };
ReapOne reap_one(const std::string& domain_dir, const ProcessId& id);

// "process 1a2b3c4d (host pod-3, pid 1, alive)" for error messages.
std::string describe(const ProcessInfo& p);
// Same, looked up by id; "process 1a2b3c4d (not registered)" if unknown.
std::string describe(const std::string& domain_dir, const ProcessId& id);

}  // namespace mpod::registry
