// Open-file-description locks. See os.hpp for why OFD locks and not flock/POSIX locks.
#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <cstring>

#include "fault.hpp"
#include "mpod/log.hpp"
#include "os.hpp"

namespace mpod::os {
namespace {
struct flock make_flock(short type, off_t start, off_t len) {
  struct flock fl;
  std::memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  return fl;
}

short type_of(LockKind k) { return k == LockKind::exclusive ? F_WRLCK : F_RDLCK; }
const char* name_of(LockKind k) { return k == LockKind::exclusive ? "exclusive" : "shared"; }

[[noreturn]] void throw_lock_error(const std::string& path, int err) {
  if (err == EINVAL || err == ENOLCK || err == EOPNOTSUPP)
    throw Error(Errc::unsupported,
                "the filesystem holding " + path +
                    " does not support file locks, which mpod needs to track live processes; "
                    "use a local filesystem (tmpfs, ext4, xfs) for --runtime-dir",
                path, err);
  throw Error(Errc::system, "cannot lock " + path, path, err);
}
}  // namespace

bool try_lock(int fd, LockKind kind, const std::string& path, off_t start, off_t len) {
  struct flock fl = make_flock(type_of(kind), start, len);
  int err = detail::take_fault(Op::lock);
  if (!err && ::fcntl(fd, F_OFD_SETLK, &fl) == 0) {
    MPOD_LOG(os, debug, "locked %s (%s, %lld+%lld)", path.c_str(), name_of(kind),
             static_cast<long long>(start), static_cast<long long>(len));
    return true;
  }
  if (!err) err = errno;
  MPOD_LOG(os, debug, "lock %s (%s) failed: %s", path.c_str(), name_of(kind), std::strerror(err));
  if (err == EAGAIN || err == EACCES) return false;
  throw_lock_error(path, err);
}

void lock_wait(int fd, LockKind kind, const std::string& path, off_t start, off_t len) {
  struct flock fl = make_flock(type_of(kind), start, len);
  for (;;) {
    int err = detail::take_fault(Op::lock);
    if (!err && ::fcntl(fd, F_OFD_SETLKW, &fl) == 0) {
      MPOD_LOG(os, debug, "locked %s (%s, waited)", path.c_str(), name_of(kind));
      return;
    }
    if (!err) err = errno;
    if (err == EINTR) continue;
    MPOD_LOG(os, debug, "lock %s (%s) failed: %s", path.c_str(), name_of(kind), std::strerror(err));
    throw_lock_error(path, err);
  }
}

void unlock(int fd, const std::string& path, off_t start, off_t len) {
  struct flock fl = make_flock(F_UNLCK, start, len);
  if (::fcntl(fd, F_OFD_SETLK, &fl) != 0) throw_lock_error(path, errno);
  MPOD_LOG(os, debug, "unlocked %s", path.c_str());
}

bool is_locked_by_other(int fd, LockKind kind, const std::string& path, off_t start, off_t len) {
  struct flock fl = make_flock(type_of(kind), start, len);
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) throw_lock_error(path, errno);
  return fl.l_type != F_UNLCK;
}

void flock_shared(int fd, const std::string& path) {
  int rc;
  do rc = ::flock(fd, LOCK_SH | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  if (rc == 0) {
    MPOD_LOG(os, debug, "flocked %s (shared)", path.c_str());
    return;
  }
  int err = errno;
  MPOD_LOG(os, debug, "flock %s failed: %s", path.c_str(), std::strerror(err));
  if (err == EWOULDBLOCK)
    throw Error(Errc::busy, "page file " + path + " is locked by another program (flock); is a DPDK process using this file name?", path, err);
  throw_lock_error(path, err);
}

}  // namespace mpod::os
