// Dir: a directory held open, and every file operation relative to it.
//
// The runtime directory is a hostPath volume other pods can write, and with
// --group other uids too: any name in it may have been planted (a symbolic
// link to /etc/shadow, a hard link, a FIFO, a directory). So mpod never
// opens a shared path by its string. A Dir is opened once, with O_NOFOLLOW,
// and checked against a DirRule (owner, mode) before anything is made in it;
// each entry is then reached with openat(O_NOFOLLOW | O_NONBLOCK) and
// fstat-checked (a regular file, one link, the expected owner) before it is
// read, mapped, locked or resized. What this process makes it makes with
// O_EXCL, and only what it made is ever chmodded or given to the group.
// docs/security.md states the boundary this draws.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "os.hpp"

namespace mpod::os {

// What a directory must be before mpod uses it.
struct DirRule {
  enum class Kind {
    volume,  // shared by pods (--runtime-dir, --huge-dir): this uid's or root's;
             // writable by anyone else only if sticky, as /tmp is
    owned,   // belongs to `owner`; only its owner (and, with --group, the
             // shared group, then sticky) may write it
    joined,  // as owned, by this uid, root, or (with --group) any owner whose
             // directory is the shared group's: a secondary joining a domain
  };
  Kind kind = Kind::owned;
  uid_t owner = 0;

  static DirRule volume() noexcept { return {Kind::volume, 0}; }
  static DirRule owned_by(uid_t uid) noexcept { return {Kind::owned, uid}; }
  static DirRule joined() noexcept { return {Kind::joined, 0}; }
};

// Any owner will do (still a regular file with one link).
constexpr uid_t kAnyOwner = static_cast<uid_t>(-1);

// What the shared group (--group) gets of a file this process creates.
enum class Share {
  none,        // owner only, whatever --group says
  read,        // the group may read it
  read_write,  // the group has the owner's permissions
};

class Dir {
 public:
  Dir() = default;

  // Opens the directory at `path` (its last component must not be a symbolic
  // link) and checks it against `rule`. Throws not_found, or untrusted
  // naming the directory, what is wrong with it and the fix.
  static Dir open(const std::string& path, const DirRule& rule);
  // As open(), but nullopt if `path` does not exist.
  static std::optional<Dir> try_open(const std::string& path, const DirRule& rule);
  // Creates subdirectory `name` with `mode` (with --group: the group's
  // bits, setgid and sticky, so members cannot remove each other's entries)
  // unless it exists, then opens and checks it against `rule`.
  Dir make_subdir(const std::string& name, mode_t mode, const DirRule& rule) const;
  std::optional<Dir> try_open_subdir(const std::string& name, const DirRule& rule) const;

  bool valid() const noexcept { return fd_ != nullptr; }
  int fd() const noexcept { return fd_ ? fd_->get() : -1; }
  const std::string& path() const noexcept { return path_; }
  std::string path_of(std::string_view name) const { return path_ + "/" + std::string(name); }
  uid_t owner() const noexcept { return owner_; }  // as found when opened

  // ---- files ----
  // Creates `name` exclusively (O_CREAT | O_EXCL | O_NOFOLLOW) with `mode`
  // (owner bits), giving the group (--group) what `share` says. Throws already_exists.
  Fd create(std::string_view name, int flags, mode_t mode, Share share = Share::read_write) const;
  // As create(), but an empty Fd (errno EEXIST) if the name is taken.
  Fd try_create(std::string_view name, int flags, mode_t mode, Share share = Share::read_write) const;
  // Opens an existing regular file with one link belonging to `owner`
  // (kAnyOwner: anybody). Never follows a symbolic link, never blocks on a
  // FIFO. Throws not_found, or untrusted naming the planted entry and the fix.
  Fd open(std::string_view name, int flags, uid_t owner) const;
  // As open(), but an empty Fd (errno ENOENT) if it does not exist.
  Fd try_open(std::string_view name, int flags, uid_t owner) const;
  // Opens `name`, creating it exclusively if it does not exist; `*created`
  // says which. What it did not create it checks as open() does.
  Fd open_or_create(std::string_view name, int flags, mode_t mode, uid_t owner, bool* created = nullptr) const;
  // An unnamed file here (O_TMPFILE), or an empty Fd if the filesystem cannot make one.
  Fd create_unnamed(mode_t mode, Share share = Share::read_write) const;
  // Names an unnamed file; throws already_exists if the name is taken.
  void link_unnamed(int fd, std::string_view name) const;
  // Renames `from` to `to` in this directory, never replacing an entry;
  // throws already_exists if `to` exists.
  void rename_noreplace(std::string_view from, std::string_view to) const;
  // Removes the entry `name` itself (a link is removed, never followed);
  // false if it did not exist. Throws for a directory or on other errors.
  bool remove(std::string_view name) const;
  // Removes the entry `name` unless a process holds a lock on it (a file in
  // use). An entry that is not a regular file with one link (a planted link,
  // FIFO or socket) is removed without being opened: only the name goes,
  // never what it points to. Throws untrusted for a directory.
  enum class Removal { absent, removed, in_use };
  Removal remove_unused(std::string_view name) const;
  // Removes an empty subdirectory; false if it did not exist.
  bool remove_dir(std::string_view name) const;
  // Names in the directory, without . and ..
  std::vector<std::string> list() const;
  // lstat of an entry (never follows); nullopt if it does not exist.
  std::optional<struct stat> stat(std::string_view name) const;
  // Seconds since the entry was last modified; 0 if it does not exist.
  double age_seconds(std::string_view name) const;

 private:
  Dir(std::shared_ptr<Fd> fd, std::string path, uid_t owner)
      : fd_(std::move(fd)), path_(std::move(path)), owner_(owner) {}
  static Dir checked(Fd fd, std::string path, const DirRule& rule);

  std::shared_ptr<Fd> fd_;  // shared by copies: a Dir is cheap to pass around
  std::string path_;        // for messages only
  uid_t owner_ = 0;
};

// Gives a file this process created (and holds open) to the shared group as
// `share` says, setting `mode`: for a file made private until it is complete.
void share_created(int fd, const std::string& path, mode_t mode, Share share);

// Why an open entry is not what mpod made (a regular file with one link,
// belonging to `owner` unless kAnyOwner), or "" if it is.
std::string entry_problem(const struct stat& st, uid_t owner);
// The same for a directory against `rule`, or "".
std::string dir_problem(const struct stat& st, const DirRule& rule);

}  // namespace mpod::os
