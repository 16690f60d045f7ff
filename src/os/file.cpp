// Files and directories.
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "fault.hpp"
#include "mpod/log.hpp"
#include "os.hpp"

namespace mpod::os {

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

namespace detail {
Errc errc_for(int err) noexcept {
  switch (err) {
    case ENOENT: return Errc::not_found;
    case EEXIST: return Errc::already_exists;
    case EACCES:
    case EPERM:
    case EROFS: return Errc::permission_denied;
    case ENOSPC:
    case ENOMEM: return Errc::no_memory;
    case ELOOP: return Errc::untrusted;
    default: return Errc::system;
  }
}
}  // namespace detail

namespace {
using detail::errc_for;

int open_raw(const std::string& path, int flags, mode_t mode) {
  if (int err = detail::take_fault(Op::open)) {
    errno = err;
    return -1;
  }
  int fd;
  do fd = ::open(path.c_str(), flags | O_CLOEXEC | O_NOFOLLOW, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}
}  // namespace

Fd open_file(const std::string& path, int flags, mode_t mode) {
  int fd = open_raw(path, flags, mode);
  if (fd < 0) {
    int err = errno;
    MPOD_LOG(os, debug, "open %s failed: %s", path.c_str(), std::strerror(err));
    const char* advice = err == EACCES || err == EROFS
                             ? "; check the directory's permissions or choose another with --runtime-dir"
                             : "";
    throw Error(errc_for(err), "cannot open " + path + advice, path, err);
  }
  MPOD_LOG(os, debug, "open %s -> fd %d", path.c_str(), fd);
  return Fd(fd);
}

void make_dirs(const std::string& path, mode_t mode) {
  if (path.empty()) return;
  // Shared with a group: members may enter and make their own domains, never remove others'.
  const mode_t want = has_shared_group() ? group_mode(mode) | S_ISVTX | S_ISGID : mode;
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), want) == 0) {
      MPOD_LOG(os, debug, "created directory %s", partial.c_str());
      // mkdir applies the umask; the mode we ask for is the mode we mean. The
      // result is checked (os::Dir) before anything is made in it.
      if (has_shared_group() && ::chown(partial.c_str(), static_cast<uid_t>(-1), shared_group()) != 0)
        MPOD_LOG(os, warning, "cannot give %s to group %u: %s", partial.c_str(), unsigned(shared_group()), std::strerror(errno));
      ::chmod(partial.c_str(), want);
      continue;
    }
    int err = errno;
    if (err == EEXIST) {
      struct stat st;
      if (::stat(partial.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
      throw Error(Errc::invalid_argument, partial + " exists and is not a directory", partial, 0);
    }
    throw Error(errc_for(err),
                "cannot create directory " + partial +
                    " (create it, fix its permissions, or choose another with --runtime-dir)",
                partial, err);
  }
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

uint64_t file_size(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(Errc::system, "cannot stat " + path, path, errno);
  return static_cast<uint64_t>(st.st_size);
}

uid_t file_owner(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(Errc::system, "cannot stat " + path, path, errno);
  return st.st_uid;
}

bool is_unlinked(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(Errc::system, "cannot stat " + path, path, errno);
  return st.st_nlink == 0;
}

void truncate_file(int fd, uint64_t size, const std::string& path) {
  int err = detail::take_fault(Op::truncate);
  if (!err && ::ftruncate(fd, static_cast<off_t>(size)) == 0) return;
  if (!err) err = errno;
  MPOD_LOG(os, debug, "ftruncate %s to %llu failed: %s", path.c_str(),
           static_cast<unsigned long long>(size), std::strerror(err));
  throw Error(errc_for(err), "cannot resize " + path, path, err);
}

void allocate_file(int fd, uint64_t offset, uint64_t len, const std::string& path) {
  int err = detail::take_fault(Op::allocate);
  if (!err) {
    do err = ::posix_fallocate(fd, static_cast<off_t>(offset), static_cast<off_t>(len));
    while (err == EINTR);
  }
  if (err == 0) {
    MPOD_LOG(os, debug, "allocated %llu bytes at %llu in %s", static_cast<unsigned long long>(len),
             static_cast<unsigned long long>(offset), path.c_str());
    return;
  }
  MPOD_LOG(os, debug, "fallocate %s failed: %s", path.c_str(), std::strerror(err));
  if (err == ENOSPC || err == ENOMEM) {
    // The advice depends on what is full: the hugepage pool, or the
    // filesystem of a --no-huge runtime directory.
    struct statfs sf;
    if (::fstatfs(fd, &sf) == 0 && static_cast<unsigned long>(sf.f_type) == HUGETLBFS_MAGIC)
      throw Error(Errc::no_memory,
                  "out of memory backing " + path + ": no free " + std::to_string(uint64_t(sf.f_bsize) >> 10) +
                      " kB hugepages (raise /proc/sys/vm/nr_hugepages, or lower -m)",
                  path, err);
    throw Error(Errc::no_memory,
                "out of space backing " + path + ": its filesystem is full (free space there, lower -m, or give "
                "--runtime-dir a directory with room)",
                path, err);
  }
  throw Error(errc_for(err), "cannot allocate backing store in " + path, path, err);
}

void write_all(int fd, const void* data, size_t len, const std::string& path) {
  auto p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errc_for(errno), "cannot write " + path, path, errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
}

std::string read_all(int fd, const std::string& path) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errc_for(errno), "cannot read " + path, path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

size_t read_up_to(int fd, void* buf, size_t cap, const std::string& path) {
  auto p = static_cast<char*>(buf);
  size_t done = 0;
  while (done < cap) {
    ssize_t n = ::pread(fd, p + done, cap - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errc_for(errno), "cannot read " + path, path, errno);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

void write_all_at(int fd, const void* data, size_t len, uint64_t offset, const std::string& path) {
  auto p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd, p + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errc_for(errno), "cannot write " + path, path, errno);
    }
    done += static_cast<size_t>(n);
  }
}

bool read_exact_at(int fd, void* buf, size_t len, uint64_t offset, const std::string& path) {
  auto p = static_cast<char*>(buf);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, p + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errc_for(errno), "cannot read " + path, path, errno);
    }
    if (n == 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void check_writable_dir(const std::string& dir, const char* what_option) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    int err = errno;
    throw Error(errc_for(err),
                std::string("directory ") + dir + " given by " + what_option +
                    " does not exist; create it or pass another",
                dir, err);
  }
  if (!S_ISDIR(st.st_mode))
    throw Error(Errc::invalid_argument,
                dir + " given by " + what_option + " is not a directory", dir, 0);
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    int err = errno;
    throw Error(Errc::permission_denied,
                std::string("directory ") + dir + " given by " + what_option +
                    " is not writable by this user; fix its permissions or pass another",
                dir, err);
  }
}

int descriptor_limit() noexcept {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY || r.rlim_cur > (1u << 30)) return 1 << 30;
  return static_cast<int>(r.rlim_cur);
}

int raise_descriptor_limit(int want) noexcept {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return descriptor_limit();
  const rlim_t target = r.rlim_max == RLIM_INFINITY ? rlim_t(want) : std::min<rlim_t>(r.rlim_max, rlim_t(want));
  if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < target) {
    r.rlim_cur = target;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
  return descriptor_limit();
}

int open_descriptors() {
  // Through a descriptor of its own, which the count leaves out.
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) throw Error(Errc::system, "cannot list /proc/self/fd to count open descriptors", "/proc/self/fd", errno);
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;
}

}  // namespace mpod::os
