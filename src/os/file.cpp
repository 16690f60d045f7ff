// Files and directories.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

namespace {
Errc errc_for(int err) {
  switch (err) {
    case ENOENT: return Errc::not_found;
    case EEXIST: return Errc::already_exists;
    case EACCES:
    case EPERM:
    case EROFS: return Errc::permission_denied;
    case ENOSPC:
    case ENOMEM: return Errc::no_memory;
    default: return Errc::system;
  }
}

int open_raw(const std::string& path, int flags, mode_t mode) {
  if (int err = detail::take_fault(Op::open)) {
    errno = err;
    return -1;
  }
  int fd;
  do fd = ::open(path.c_str(), flags | O_CLOEXEC, group_mode(mode));
  while (fd < 0 && errno == EINTR);
  if (fd >= 0 && (flags & (O_CREAT | O_TMPFILE))) share_with_group(fd, path, mode);
  return fd;
}
}  // namespace

void share_with_group(int fd, const std::string& path, mode_t mode) noexcept {
  if (!has_shared_group()) return;
  // Files another member of the group created stay theirs: only the creator can change them.
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_uid != ::geteuid()) return;
  if (::fchown(fd, static_cast<uid_t>(-1), shared_group()) != 0 || ::fchmod(fd, group_mode(mode)) != 0)
    MPOD_LOG(os, warning, "cannot give %s to group %u: %s", path.c_str(), unsigned(shared_group()), std::strerror(errno));
}

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

Fd try_open_file(const std::string& path, int flags, mode_t mode) {
  int fd = open_raw(path, flags, mode);
  if (fd < 0) {
    int err = errno;
    MPOD_LOG(os, debug, "open %s failed: %s", path.c_str(), std::strerror(err));
    if (err == ENOENT || (err == EEXIST && (flags & O_EXCL))) {
      errno = err;
      return Fd();
    }
    throw Error(errc_for(err), "cannot open " + path, path, err);
  }
  MPOD_LOG(os, debug, "open %s -> fd %d", path.c_str(), fd);
  return Fd(fd);
}

bool remove_file(const std::string& path) {
  if (::unlink(path.c_str()) == 0) {
    MPOD_LOG(os, debug, "removed %s", path.c_str());
    return true;
  }
  int err = errno;
  if (err == ENOENT) return false;
  MPOD_LOG(os, debug, "remove %s failed: %s", path.c_str(), std::strerror(err));
  throw Error(errc_for(err), "cannot remove " + path, path, err);
}

void link_file(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) {
    MPOD_LOG(os, debug, "linked %s -> %s", from.c_str(), to.c_str());
    return;
  }
  int err = errno;
  MPOD_LOG(os, debug, "link %s -> %s failed: %s", from.c_str(), to.c_str(), std::strerror(err));
  throw Error(errc_for(err), "cannot create " + to, to, err);
}

Fd open_unnamed(const std::string& dir, mode_t mode) {
  int fd = open_raw(dir, O_TMPFILE | O_RDWR, mode);
  if (fd < 0) {
    int err = errno;
    MPOD_LOG(os, debug, "open unnamed file in %s failed: %s", dir.c_str(), std::strerror(err));
    if (err == EOPNOTSUPP || err == EISDIR || err == EINVAL) return Fd();
    throw Error(errc_for(err), "cannot create a file in " + dir, dir, err);
  }
  MPOD_LOG(os, debug, "open unnamed file in %s -> fd %d", dir.c_str(), fd);
  return Fd(fd);
}

void link_unnamed(int fd, const std::string& path) {
  // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd works for everyone else.
  int rc = ::linkat(fd, "", AT_FDCWD, path.c_str(), AT_EMPTY_PATH);
  if (rc != 0 && errno != EEXIST) {
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    rc = ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW);
  }
  if (rc == 0) {
    MPOD_LOG(os, debug, "linked fd %d -> %s", fd, path.c_str());
    return;
  }
  int err = errno;
  MPOD_LOG(os, debug, "link fd %d -> %s failed: %s", fd, path.c_str(), std::strerror(err));
  throw Error(errc_for(err), "cannot create " + path, path, err);
}

double age_seconds(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return double(now.tv_sec - st.st_mtim.tv_sec) + double(now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
}

void make_dirs(const std::string& path, mode_t mode) {
  if (path.empty()) return;
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), mode) == 0) {
      MPOD_LOG(os, debug, "created directory %s", partial.c_str());
      // mkdir applies the umask; the mode we ask for is the mode we mean.
      ::chmod(partial.c_str(), group_mode(mode));
      if (has_shared_group() && ::chown(partial.c_str(), static_cast<uid_t>(-1), shared_group()) != 0)
          MPOD_LOG(os, warning, "cannot give %s to group %u: %s", partial.c_str(), unsigned(shared_group()), std::strerror(errno));
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

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) {
    int err = errno;
    if (err == ENOENT) return names;
    throw Error(errc_for(err), "cannot list directory " + path, path, err);
  }
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  ::closedir(d);
  return names;
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
  if (err == ENOSPC || err == ENOMEM)
    throw Error(Errc::no_memory,
                "out of memory backing " + path +
                    ": no free pages of this size (raise /proc/sys/vm/nr_hugepages, free space "
                    "in the directory, or lower -m)",
                path, err);
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

std::string read_small_file(const std::string& path) {
  Fd fd = open_file(path, O_RDONLY);
  return read_all(fd.get(), path);
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

void rename_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) == 0) {
    MPOD_LOG(os, debug, "renamed %s -> %s", from.c_str(), to.c_str());
    return;
  }
  int err = errno;
  MPOD_LOG(os, debug, "rename %s -> %s failed: %s", from.c_str(), to.c_str(), std::strerror(err));
  throw Error(errc_for(err), "cannot rename " + from + " to " + to, from, err);
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

}  // namespace mpod::os
