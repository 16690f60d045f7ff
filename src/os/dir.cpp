// Directories held open, and file operations relative to them. See dir.hpp.
#include "dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "fault.hpp"
#include "mpod/log.hpp"

namespace mpod::os {

namespace {
using detail::errc_for;

std::string octal(mode_t m) {
  char b[16];
  std::snprintf(b, sizeof b, "%04o", unsigned(m & 07777));
  return b;
}

const char* kind_name(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  return "not a regular file";
}

// An entry's name: one component, never a way out of the directory. Names
// come from mpod itself or from the checked config, so this only ever
// fires on a bug or a hostile value that got past a check.
const std::string& plain(const Dir& dir, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
    throw Error(Errc::invalid_argument, "refusing the entry name '" + name + "' in " + dir.path() +
                                            ": an entry name is one plain path component", dir.path());
  return name;
}

int open_at(int dirfd, const std::string& name, int flags, mode_t mode) {
  if (int err = detail::take_fault(Op::open)) {
    errno = err;
    return -1;
  }
  int fd;
  do fd = ::openat(dirfd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

// `mode` with what `share` gives the shared group, if there is one.
mode_t shared_mode(mode_t mode, Share share) {
  if (!has_shared_group() || share == Share::none) return mode;
  return share == Share::read ? mode | ((mode & 0400) >> 3) : group_mode(mode);
}

// Gives a file this process just created to the shared group, with its mode.
void give_to_group(int fd, const std::string& path, mode_t mode, Share share) {
  if (share != Share::none && has_shared_group() && ::fchown(fd, static_cast<uid_t>(-1), shared_group()) != 0)
    MPOD_LOG(os, warning, "cannot give %s to group %u: %s", path.c_str(), unsigned(shared_group()), std::strerror(errno));
  // The mode we ask for is the mode we mean, whatever the umask.
  if (::fchmod(fd, shared_mode(mode, share)) != 0)
    throw Error(errc_for(errno), "cannot set the permissions of " + path, path, errno);
}

// Opens directory `name` relative to `base` (AT_FDCWD: a path), never
// following a link at it; nullopt if it does not exist. `path` is for messages.
std::optional<Fd> open_dir_at(int base, const std::string& name, const std::string& path) {
  int fd;
  do fd = ::openat(base, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd >= 0) {
    MPOD_LOG(os, debug, "opened directory %s -> fd %d", path.c_str(), fd);
    return Fd(fd);
  }
  const int err = errno;
  if (err == ENOENT) return std::nullopt;
  if (err == ELOOP || err == ENOTDIR) {  // O_DIRECTORY | O_NOFOLLOW on a link gives ENOTDIR: ask what it is
    struct stat st {};
    ::fstatat(base, name.c_str(), &st, AT_SYMLINK_NOFOLLOW);
    throw Error(Errc::untrusted,
                "refusing to use " + path + ": it is " + kind_name(st.st_mode) +
                    ", not a directory; give the real directory, and if it was planted, check who can write to "
                    "the one above it",
                path, err);
  }
  throw Error(errc_for(err),
              "cannot open directory " + path +
                  (err == EACCES ? "; check its permissions or choose another directory" : ""),
              path, err);
}

// The message for an entry that is not what mpod made, with the fix.
[[noreturn]] void throw_planted(const Dir& dir, const std::string& name, const std::string& problem) {
  const std::string path = dir.path_of(name);
  throw Error(Errc::untrusted,
              path + " " + problem + ": mpod did not make it, so it was planted or left by something else. "
                  "Remove it if no mpod process uses it, and check who can write to " + dir.path(),
              path);
}
}  // namespace

std::string entry_problem(const struct stat& st, uid_t owner) {
  if (!S_ISREG(st.st_mode)) return std::string("is ") + kind_name(st.st_mode);
  if (st.st_nlink != 1) return "has " + std::to_string(st.st_nlink) + " hard links (another name points at the same file)";
  if (owner != kAnyOwner && st.st_uid != owner)
    return "belongs to uid " + std::to_string(st.st_uid) + ", not uid " + std::to_string(owner);
  return "";
}

std::string dir_problem(const struct stat& st, const DirRule& rule) {
  if (!S_ISDIR(st.st_mode)) return std::string("is ") + kind_name(st.st_mode) + ", not a directory";
  const uid_t me = ::geteuid();
  const mode_t mode = st.st_mode;
  const bool sticky = mode & S_ISVTX;
  if (rule.kind == DirRule::Kind::volume) {
    if (st.st_uid != me && st.st_uid != 0)
      return "belongs to uid " + std::to_string(st.st_uid) + ", neither this process's uid " + std::to_string(me) +
             " nor root; use a directory of your own or root's";
    if ((mode & (S_IWGRP | S_IWOTH)) && !sticky)
      return "is writable by others (mode " + octal(mode) + ") without the sticky bit, so they could rename what "
             "mpod makes there; chmod +t it (as /tmp is), or chmod go-w it";
    return "";
  }
  const bool group_dir = has_shared_group() && st.st_gid == shared_group();
  const bool owner_ok = rule.kind == DirRule::Kind::owned
                            ? st.st_uid == rule.owner
                            : st.st_uid == me || st.st_uid == 0 || group_dir;
  if (!owner_ok)
    return "belongs to uid " + std::to_string(st.st_uid) + " (group " + std::to_string(st.st_gid) + "), not uid " +
           std::to_string(rule.kind == DirRule::Kind::owned ? rule.owner : me) +
           (rule.kind == DirRule::Kind::joined && has_shared_group()
                ? " nor group " + std::to_string(shared_group())
                : std::string()) +
           "; if no mpod process uses it, remove it, or run as its owner";
  if (mode & S_IWOTH) return "is writable by everybody (mode " + octal(mode) + "); chmod o-w it or remove it";
  if (mode & S_IWGRP) {
    if (!group_dir)
      return "is writable by group " + std::to_string(st.st_gid) + " (mode " + octal(mode) + ")" +
             (has_shared_group() ? ", not the --group given" : " and no --group was given") +
             "; chmod g-w it, or pass --group naming that group";
    if (!sticky) return "is group-writable without the sticky bit (mode " + octal(mode) + "); chmod +t it";
  }
  return "";
}

Dir Dir::checked(Fd fd, std::string path, const DirRule& rule) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw Error(Errc::system, "cannot stat directory " + path, path, errno);
  if (std::string why = dir_problem(st, rule); !why.empty())
    throw Error(Errc::untrusted, "refusing to use directory " + path + ": it " + why, path);
  return Dir(std::make_shared<Fd>(std::move(fd)), std::move(path), st.st_uid);
}

std::optional<Dir> Dir::try_open(const std::string& path, const DirRule& rule) {
  auto fd = open_dir_at(AT_FDCWD, path, path);
  if (!fd) return std::nullopt;
  return checked(std::move(*fd), path, rule);
}

Dir Dir::open(const std::string& path, const DirRule& rule) {
  if (auto d = try_open(path, rule)) return std::move(*d);
  throw Error(Errc::not_found, "directory " + path + " does not exist", path, ENOENT);
}

Dir Dir::make_subdir(const std::string& name, mode_t mode, const DirRule& rule) const {
  plain(*this, name);
  const std::string path = path_of(name);
  const mode_t want = has_shared_group() ? group_mode(mode) | S_ISGID | S_ISVTX : mode;
  if (::mkdirat(fd(), name.c_str(), want) == 0) {
    MPOD_LOG(os, debug, "created directory %s", path.c_str());
    auto sub = open_dir_at(fd(), name, path);
    if (!sub) throw Error(Errc::not_found, "directory " + path + " vanished as it was made; start again", path);
    struct stat st;
    // Ours only if it is still the directory we made (owner is us).
    if (::fstat(sub->get(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid()) {
      give_to_group(sub->get(), path, mode, Share::read_write);
      if (has_shared_group() && ::fchmod(sub->get(), want) != 0)  // chmod clears setgid for non-members: set it again
        throw Error(errc_for(errno), "cannot set the permissions of " + path, path, errno);
    }
    return checked(std::move(*sub), path, rule);
  }
  if (errno != EEXIST)
    throw Error(errc_for(errno),
                "cannot create directory " + path + " (check the permissions of " + path_ +
                    ", or choose another --runtime-dir)",
                path, errno);
  if (auto d = try_open_subdir(name, rule)) return std::move(*d);
  throw Error(Errc::not_found, "directory " + path + " vanished while it was being opened; start again", path);
}

std::optional<Dir> Dir::try_open_subdir(const std::string& name, const DirRule& rule) const {
  plain(*this, name);
  auto sub = open_dir_at(fd(), name, path_of(name));
  if (!sub) return std::nullopt;
  return checked(std::move(*sub), path_of(name), rule);
}

Fd Dir::try_create(std::string_view name, int flags, mode_t mode, Share share) const {
  const std::string n = plain(*this, std::string(name));
  int fd = open_at(this->fd(), n, flags | O_CREAT | O_EXCL, shared_mode(mode, share));
  if (fd < 0) {
    int err = errno;
    MPOD_LOG(os, debug, "create %s failed: %s", path_of(n).c_str(), std::strerror(err));
    if (err == EEXIST) {
      errno = err;
      return Fd();
    }
    throw Error(errc_for(err),
                "cannot create " + path_of(n) +
                    (err == EACCES ? "; check the permissions of " + path_ + " or choose another --runtime-dir" : ""),
                path_of(n), err);
  }
  Fd owned(fd);
  give_to_group(fd, path_of(n), mode, share);  // O_EXCL: this is the file we made
  MPOD_LOG(os, debug, "created %s -> fd %d", path_of(n).c_str(), fd);
  return owned;
}

Fd Dir::create(std::string_view name, int flags, mode_t mode, Share share) const {
  Fd fd = try_create(name, flags, mode, share);
  if (!fd)
    throw Error(Errc::already_exists, path_of(name) + " already exists; remove it if no mpod process uses it",
                path_of(name), EEXIST);
  return fd;
}

Fd Dir::try_open(std::string_view name, int flags, uid_t owner) const {
  const std::string n = plain(*this, std::string(name));
  int fd = open_at(this->fd(), n, flags & ~(O_CREAT | O_EXCL), 0);
  if (fd < 0) {
    int err = errno;
    MPOD_LOG(os, debug, "open %s failed: %s", path_of(n).c_str(), std::strerror(err));
    if (err == ENOENT) {
      errno = err;
      return Fd();
    }
    if (err == ELOOP || err == EISDIR || err == ENXIO || err == ENOTDIR) {
      struct stat st {};
      ::fstatat(this->fd(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW);
      throw_planted(*this, n, std::string("is ") + kind_name(st.st_mode));
    }
    throw Error(errc_for(err),
                "cannot open " + path_of(n) +
                    (err == EACCES ? "; check its permissions, or run as a user that may open it" : ""),
                path_of(n), err);
  }
  Fd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(Errc::system, "cannot stat " + path_of(n), path_of(n), errno);
  if (std::string why = entry_problem(st, owner); !why.empty()) throw_planted(*this, n, why);
  MPOD_LOG(os, debug, "open %s -> fd %d", path_of(n).c_str(), fd);
  return owned;
}

Fd Dir::open(std::string_view name, int flags, uid_t owner) const {
  Fd fd = try_open(name, flags, owner);
  if (!fd) throw Error(Errc::not_found, "cannot open " + path_of(name) + ": it does not exist", path_of(name), ENOENT);
  return fd;
}

Fd Dir::open_or_create(std::string_view name, int flags, mode_t mode, uid_t owner, bool* created) const {
  // Removed between our two tries by a process cleaning up: try again.
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (Fd fd = try_create(name, flags, mode)) {
      if (created) *created = true;
      return fd;
    }
    if (Fd fd = try_open(name, flags, owner)) {
      if (created) *created = false;
      return fd;
    }
  }
  throw Error(Errc::busy, "cannot open or create " + path_of(name) + ": it keeps appearing and vanishing",
              path_of(name));
}

void share_created(int fd, const std::string& path, mode_t mode, Share share) { give_to_group(fd, path, mode, share); }

Fd Dir::create_unnamed(mode_t mode, Share share) const {
  int fd;
  do fd = ::openat(this->fd(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, shared_mode(mode, share));
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    MPOD_LOG(os, debug, "open unnamed file in %s failed: %s", path_.c_str(), std::strerror(err));
    if (err == EOPNOTSUPP || err == EISDIR || err == EINVAL) return Fd();
    throw Error(errc_for(err), "cannot create a file in " + path_, path_, err);
  }
  Fd owned(fd);
  give_to_group(fd, path_ + "/(unnamed)", mode, share);
  return owned;
}

void Dir::link_unnamed(int file, std::string_view name) const {
  const std::string n = plain(*this, std::string(name));
  // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd works for everyone else.
  int rc = ::linkat(file, "", fd(), n.c_str(), AT_EMPTY_PATH);
  if (rc != 0 && errno != EEXIST) {
    std::string proc = "/proc/self/fd/" + std::to_string(file);
    rc = ::linkat(AT_FDCWD, proc.c_str(), fd(), n.c_str(), AT_SYMLINK_FOLLOW);
  }
  if (rc == 0) {
    MPOD_LOG(os, debug, "linked fd %d -> %s", file, path_of(n).c_str());
    return;
  }
  int err = errno;
  throw Error(errc_for(err), "cannot create " + path_of(n), path_of(n), err);
}

void Dir::rename_noreplace(std::string_view from, std::string_view to) const {
  const std::string f = plain(*this, std::string(from)), t = plain(*this, std::string(to));
  if (::syscall(SYS_renameat2, fd(), f.c_str(), fd(), t.c_str(), RENAME_NOREPLACE) == 0) {
    MPOD_LOG(os, debug, "renamed %s -> %s", path_of(f).c_str(), path_of(t).c_str());
    return;
  }
  int err = errno;
  throw Error(errc_for(err),
              "cannot rename " + path_of(f) + " to " + path_of(t) +
                  (err == EEXIST ? ": something else appeared at that name; remove it and start again" : ""),
              path_of(t), err);
}

bool Dir::remove(std::string_view name) const {
  const std::string n = plain(*this, std::string(name));
  if (::unlinkat(fd(), n.c_str(), 0) == 0) {
    MPOD_LOG(os, debug, "removed %s", path_of(n).c_str());
    return true;
  }
  int err = errno;
  if (err == ENOENT) return false;
  MPOD_LOG(os, debug, "remove %s failed: %s", path_of(n).c_str(), std::strerror(err));
  throw Error(errc_for(err),
              "cannot remove " + path_of(n) +
                  (err == EISDIR ? ": it is a directory; remove it by hand if no mpod process uses it"
                   : err == EPERM || err == EACCES
                       ? ": it belongs to another user in a directory they may not share; its owner or root can remove it"
                       : std::string()),
              path_of(n), err);
}

Dir::Removal Dir::remove_unused(std::string_view name) const {
  auto st = stat(name);
  if (!st) return Removal::absent;
  if (S_ISDIR(st->st_mode)) throw_planted(*this, std::string(name), "is a directory");
  if (!entry_problem(*st, kAnyOwner).empty()) {
    MPOD_LOG(os, notice, "removing %s: it %s, which mpod never makes", path_of(name).c_str(),
             entry_problem(*st, kAnyOwner).c_str());
    return remove(name) ? Removal::removed : Removal::absent;
  }
  Fd fd = try_open(name, O_RDWR, kAnyOwner);
  if (!fd) return Removal::absent;
  if (!try_lock(fd.get(), LockKind::exclusive, path_of(name))) return Removal::in_use;
  return remove(name) ? Removal::removed : Removal::absent;
}

bool Dir::remove_dir(std::string_view name) const {
  const std::string n = plain(*this, std::string(name));
  if (::unlinkat(fd(), n.c_str(), AT_REMOVEDIR) == 0) return true;
  int err = errno;
  if (err == ENOENT) return false;
  throw Error(errc_for(err), "cannot remove directory " + path_of(n), path_of(n), err);
}

std::vector<std::string> Dir::list() const {
  std::vector<std::string> names;
  // A second descriptor: readdir moves the offset, and copies of this Dir share ours.
  int dup = ::openat(fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) throw Error(errc_for(errno), "cannot list directory " + path_, path_, errno);
  DIR* d = ::fdopendir(dup);
  if (!d) {
    int err = errno;
    ::close(dup);
    throw Error(errc_for(err), "cannot list directory " + path_, path_, err);
  }
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  ::closedir(d);
  return names;
}

std::optional<struct stat> Dir::stat(std::string_view name) const {
  struct stat st;
  if (::fstatat(fd(), plain(*this, std::string(name)).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
  return st;
}

double Dir::age_seconds(std::string_view name) const {
  auto st = stat(name);
  if (!st) return 0;
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return double(now.tv_sec - st->st_mtim.tv_sec) + double(now.tv_nsec - st->st_mtim.tv_nsec) / 1e9;
}

}  // namespace mpod::os
