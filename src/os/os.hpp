// The os layer: the only code in mpod that calls the kernel.
//
// Each call either succeeds or throws mpod::Error carrying the path and errno,
// with a message naming the operation. At debug level (component "os") every
// file opened, locked, mapped or removed is logged, with errno on failure.
// Tests inject failures through inject_fault().
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mpod/error.hpp"

namespace mpod::os {

class Dir;

// Owning file descriptor. Closing never throws.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// ---- sharing with a group (--group) ----
// From set_shared_group() on, every file, directory and socket this process
// creates is given to `gid`, with the group permissions os::Share says
// (os::Dir). Process-wide, set once at start-up.
void set_shared_group(gid_t gid) noexcept;
bool has_shared_group() noexcept;
gid_t shared_group() noexcept;
// `mode` with the owner's permissions granted to the group too (0600 -> 0660), if there is one.
mode_t group_mode(mode_t mode) noexcept;
// The gid of a group given by name or number; throws invalid_argument naming it.
gid_t resolve_group(const std::string& name_or_gid);
// Whether `uid` may speak to us: it is ours, root, or the shared group's member.
bool uid_is_trusted(uid_t uid, gid_t gid);

// ---- descriptors ----
// This process's limit on open descriptors (RLIMIT_NOFILE, soft).
int descriptor_limit() noexcept;
// Raises the soft limit towards `want`, never past the hard limit (as Go's
// runtime does at start): the hard limit is the administrator's word, the
// soft one only a default. Returns the limit now.
int raise_descriptor_limit(int want) noexcept;
// How many descriptors this process has open now (counts /proc/self/fd).
int open_descriptors();

// ---- fault injection (tests only) ----
enum class Op { open, lock, map, allocate, truncate, count_ };
// The next `times` calls of `op` fail with `err` before reaching the kernel.
void inject_fault(Op op, int err, int times = 1) noexcept;
void clear_faults() noexcept;

// ---- files and directories ----
// Files in the runtime and huge directories are reached through os::Dir
// (dir.hpp), never by path. These take paths the user gave or the process's own.
// Opens `path`, never following a symbolic link at its last component.
Fd open_file(const std::string& path, int flags, mode_t mode = 0600);
void make_dirs(const std::string& path, mode_t mode);            // mkdir -p; existing is fine
bool path_exists(const std::string& path);
uint64_t file_size(int fd, const std::string& path_for_errors);
uid_t file_owner(int fd, const std::string& path_for_errors);
// True if the open file has no name left (unlinked since it was opened).
bool is_unlinked(int fd, const std::string& path_for_errors);
void truncate_file(int fd, uint64_t size, const std::string& path_for_errors);
// Reserves backing store so later page faults cannot fail with SIGBUS.
void allocate_file(int fd, uint64_t offset, uint64_t len, const std::string& path_for_errors);
void write_all(int fd, const void* data, size_t len, const std::string& path_for_errors);
std::string read_all(int fd, const std::string& path_for_errors);  // from the current offset to EOF
// Reads from offset 0 until `cap` bytes or the end of the file; returns how many.
size_t read_up_to(int fd, void* buf, size_t cap, const std::string& path_for_errors);
void write_all_at(int fd, const void* data, size_t len, uint64_t offset, const std::string& path_for_errors);
// Reads exactly `len` bytes at `offset`; false if the file is shorter.
bool read_exact_at(int fd, void* buf, size_t len, uint64_t offset, const std::string& path_for_errors);
// Checks that `dir` is a writable directory; throws with advice otherwise.
void check_writable_dir(const std::string& dir, const char* what_option);

// ---- open-file-description locks (fcntl F_OFD_*) ----
// OFD locks belong to the inode, so they work across PID, mount and other
// namespaces, are released by the kernel when the holder dies, and can be
// tested without being taken (F_OFD_GETLK), so a test never disturbs the holder.
enum class LockKind { shared, exclusive };
// Takes the lock without waiting. Returns false if another open file holds a
// conflicting lock; throws unsupported if the filesystem has no locks.
bool try_lock(int fd, LockKind kind, const std::string& path_for_errors, off_t start = 0,
              off_t len = 0);
// Waits for the lock. Throws on errors other than EINTR.
void lock_wait(int fd, LockKind kind, const std::string& path_for_errors, off_t start = 0,
               off_t len = 0);
void unlock(int fd, const std::string& path_for_errors, off_t start = 0, off_t len = 0);
// True if some other open file description holds a lock that conflicts with `kind`.
bool is_locked_by_other(int fd, LockKind kind, const std::string& path_for_errors,
                        off_t start = 0, off_t len = 0);

// A BSD flock(LOCK_SH) beside the OFD locks, for files that other software
// judges by flock: DPDK deletes unflocked "*map_*" files in a hugetlbfs
// directory it starts on, so mpod's page files carry one while mapped.
void flock_shared(int fd, const std::string& path_for_errors);

// ---- memory mappings ----
// Reserves [addr, addr+len) with no access. With `exact`, fails with
// address_conflict (naming the overlapping mapping) if anything is there;
// otherwise `addr` is only a hint.
void* reserve_range(void* addr, size_t len, bool exact);
// Maps `fd` over part of a range this process reserved (MAP_FIXED into our own reservation).
void map_shared_fixed(void* addr, size_t len, int fd, uint64_t offset,
                      const std::string& path_for_errors);
// Maps a whole small file anywhere, read-write shared.
void* map_shared(size_t len, int fd, const std::string& path_for_errors);
// Tells the kernel that pages of a file mapping are used in no order, so a
// fault brings in that page alone, not a readahead window: for large sparse
// files of which a process touches a few scattered pages (mailboxes).
// Advice only: a kernel that refuses it costs speed, never correctness.
void advise_random(void* addr, size_t len) noexcept;
// Returns pages to a no-access reservation (keeps the range reserved).
void unmap_to_reserved(void* addr, size_t len);
void unmap(void* addr, size_t len);
// "start-end perms path" of the first mapping in this process overlapping the range, or "".
std::string describe_mapping(const void* addr, size_t len);

// ---- surviving damaged shared files (bus_guard.cpp) ----
// A file someone truncates, or a sparse one whose filesystem fills up, makes
// every access to a lost page of its mappings a SIGBUS. Once installed (the
// runtime does it at start), a SIGBUS inside a mapping made by
// map_shared/map_shared_fixed replaces the page that faulted with a private
// zero page and the access runs again: the process loses that page's
// sharing, not its life. A SIGBUS anywhere else goes to the disposition that
// was there before (by default it still ends the process).
void install_bus_guard();
// Done by the map and unmap calls above for every shared mapping; `fd` only
// tells the page size (a hugetlbfs file's).
void guard_mapping(void* base, size_t len, int fd) noexcept;
void unguard_mapping(void* addr, size_t len) noexcept;
// How many pages the guard replaced in this process so far.
uint64_t bus_faults_recovered() noexcept;

// ---- Unix datagram sockets (the multi-process channel) ----
// Binds a datagram socket named `name` in `dir` with permissions `mode`
// (with --group, the group's too), never replacing an existing entry. SO_PASSCRED is
// set, so every datagram received carries the sender's uid and gid as the
// kernel saw them.
Fd bind_datagram_socket(const Dir& dir, const std::string& name, mode_t mode);
// Both binds go through a private directory "<kBindDirPrefix><name>-<random>"
// in `dir`, removed once the socket is in place. A binder killed meanwhile
// leaves it behind: the name says whose socket it was, for whoever reaps.
inline constexpr std::string_view kBindDirPrefix = ".bind-";
// A handle (O_PATH) on the socket node `name` in `dir`, checked to be a
// socket belonging to `owner` (kAnyOwner: anybody); empty if there is none.
// Sending to socket_node_address() of it reaches exactly that node, whatever
// is renamed meanwhile.
Fd open_socket_node(const Dir& dir, const std::string& name, uid_t owner);
std::string socket_node_address(int fd);
// A datagram socket connected to the socket node `name` in `dir`, checked
// as open_socket_node() does: sends on it (send_datagram with no `dest`)
// reach that node and no other, with no path looked up per datagram. Empty
// if nothing is bound there (yet, or any more).
Fd connect_datagram_socket(const Dir& dir, const std::string& name, uid_t owner);
// Stream sockets: the watcher's connections (docs/channel.md, "Liveness").
// A listening stream socket `name` in `dir`, placed as bind_datagram_socket
// places its socket, listening before it appears. Non-blocking.
Fd listen_stream_socket(const Dir& dir, const std::string& name, mode_t mode, int backlog);
// A non-blocking stream socket connected to the listener `name` in `dir`
// (whoever owns the node: the caller checks the peer's credentials). Empty
// if nobody listens there, or its backlog is full: try again later.
Fd connect_stream_socket(const Dir& dir, const std::string& name);
struct PeerCredentials {
  uid_t uid = 0;
  gid_t gid = 0;
};
// The uid and gid the kernel recorded for the other end of a connection.
PeerCredentials peer_credentials(int fd);
// A non-blocking accepted connection, with its peer's credentials; empty if
// none is waiting. Throws no_memory when out of descriptors (EMFILE, ENFILE).
Fd accept_connection(int listener, PeerCredentials* who);
// Non-blocking stream I/O. send_some: bytes sent, 0 if the buffer is full,
// -1 if the peer has gone. recv_some: bytes received, 0 at the end of the
// stream (the peer closed or died), -1 if nothing is there yet.
ssize_t send_some(int fd, const void* data, size_t len);
ssize_t recv_some(int fd, void* buf, size_t cap);

enum class SendStatus { ok, peer_gone, full };
// Sends one datagram made of `parts` with `nfds` descriptors, without waiting,
// to `dest` (a path), or on a connected socket if `dest` is empty.
// peer_gone: nobody is bound at `dest` (ENOENT, ECONNREFUSED); full: the
// receiver's queue is full (EAGAIN). Throws on other errors.
struct Part {
  const void* data;
  size_t len;
};
SendStatus send_datagram(int fd, const std::string& dest, const Part* parts, size_t nparts,
                         const int* fds, size_t nfds);
struct Received {
  size_t len = 0;
  bool truncated = false;  // datagram or descriptors did not fit
  bool has_creds = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<int> fds;    // received descriptors, now owned by the caller
};
// Receives one datagram without waiting; false if none is queued.
bool recv_datagram(int fd, void* buf, size_t cap, Received* out);
// An eventfd to wake a thread blocked in wait_readable.
Fd make_event();
void signal_event(int fd);
void drain_event(int fd);
// Waits until `a` or `b` is readable or `timeout_ms` passes (-1: forever).
// Returns a bitmask: 1 if `a` is readable, 2 if `b` is.
int wait_readable(int a, int b, int timeout_ms);

// ---- futexes on shared mappings: wake-ups between processes ----
// Sleeps while *word == expected, at most timeout_ns (0: no limit). Returns on
// a wake-up, a timeout, a signal or a changed value; callers re-check.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns) noexcept;
void futex_wake(std::atomic<uint32_t>* word) noexcept;  // wakes every waiter
// One step of a spin loop: a CPU pause, and every 64th step a yield, so
// spinning threads give way when there are more threads than cores.
void spin_pause(uint32_t step) noexcept;
// One CPU spin-wait hint (x86 pause, arm yield): a waiter's loop body.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// ---- identity and environment ----
void random_bytes(void* out, size_t len);
// The PID as this process sees it: read in one place only, where identity is recorded.
int32_t current_pid();
uint64_t pid_namespace_inode();  // 0 if /proc/self/ns/pid cannot be read
std::string host_name();
uint64_t realtime_ns();
uint64_t monotonic_ns();
void sleep_ns(uint64_t ns);
uid_t effective_uid();
size_t system_page_size();

// A mounted hugetlbfs with its page size, and the pages free of that size.
struct HugeMount {
  std::string path;
  uint64_t page_size = 0;
  uint64_t free_pages = 0;
  uint64_t total_pages = 0;
};
std::vector<HugeMount> hugetlbfs_mounts();
// The page size of a hugetlbfs at `dir`, or 0 if `dir` is not a hugetlbfs.
uint64_t hugetlbfs_page_size(const std::string& dir);

}  // namespace mpod::os
