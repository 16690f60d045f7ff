// os::Dir and the checks it makes: directories refused for their owner or
// mode (DirRule), entries refused for what they are (a symbolic link, a hard
// link, a FIFO, a directory, another owner's file), exclusive creation with
// the mode asked whatever the umask, removal that never follows a planted
// name and never removes a file in use, renames that never replace, and the
// channel's socket nodes (bound with the mode asked, reached through a
// checked handle).
//
// Runs as any user; tests that need a file of another uid chown it to 65534
// and skip when not root.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mpod/error.hpp"
#include "src/os/dir.hpp"
#include "src/os/os.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod {
namespace {

using os::Dir;
using os::DirRule;
using os::Fd;
using test::TempDir;

constexpr uid_t kNobody = 65534;

// The mpod::Error `f` throws, or nullopt if it throws none.
std::optional<Error> error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

#define SKIP_UNLESS_ROOT() \
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown a file to uid 65534"

// ---- raw helpers on the temp dir, by path (the test's own files) ----

void write_file(const std::string& path, const std::string& content, mode_t mode = 0600) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::write(fd, content.data(), content.size()), ssize_t(content.size()));
  ::close(fd);
}

std::optional<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string s;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, size_t(n));
  ::close(fd);
  return s;
}

bool exists_nofollow(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

struct stat lstat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

// Sets the umask for a scope.
struct UmaskGuard {
  mode_t old;
  explicit UmaskGuard(mode_t m) : old(::umask(m)) {}
  ~UmaskGuard() { ::umask(old); }
};

// A fresh subdirectory of `parent` with exactly `mode`.
std::string make_dir(const TempDir& parent, const std::string& name, mode_t mode) {
  const std::string p = parent.path() + "/" + name;
  EXPECT_EQ(::mkdir(p.c_str(), 0700), 0) << p;
  EXPECT_EQ(::chmod(p.c_str(), mode), 0) << p;
  return p;
}

// The Dir of a temp dir, as mpod would open its own domain directory.
Dir own(const TempDir& t) { return Dir::open(t.path(), DirRule::owned_by(::geteuid())); }

int wait_exit(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// ---- pure checks ----

struct stat fake_stat(mode_t mode, uid_t uid, nlink_t nlink = 1, gid_t gid = 0) {
  struct stat st {};
  st.st_mode = mode;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_nlink = nlink;
  return st;
}

TEST(DirChecks, EntryProblemNamesWhatIsWrong) {
  const uid_t me = ::geteuid();
  const uid_t other = me == kNobody ? 1 : kNobody;
  EXPECT_EQ(os::entry_problem(fake_stat(S_IFREG | 0600, me), me), "");
  EXPECT_EQ(os::entry_problem(fake_stat(S_IFREG | 0600, other), os::kAnyOwner), "");
  EXPECT_TRUE(contains(os::entry_problem(fake_stat(S_IFREG | 0600, me, 2), me), "2 hard links"));
  EXPECT_TRUE(contains(os::entry_problem(fake_stat(S_IFREG | 0600, other), me),
                       "belongs to uid " + std::to_string(other)));
  EXPECT_EQ(os::entry_problem(fake_stat(S_IFLNK | 0777, me), me), "is a symbolic link");
  EXPECT_EQ(os::entry_problem(fake_stat(S_IFIFO | 0600, me), me), "is a FIFO");
  EXPECT_EQ(os::entry_problem(fake_stat(S_IFSOCK | 0600, me), me), "is a socket");
  EXPECT_EQ(os::entry_problem(fake_stat(S_IFDIR | 0700, me), me), "is a directory");
  EXPECT_EQ(os::entry_problem(fake_stat(S_IFCHR | 0600, me), me), "is a device");
}

TEST(DirChecks, DirProblemAppliesTheRule) {
  ASSERT_FALSE(os::has_shared_group()) << "the unit binary must not set a shared group";
  const uid_t me = ::geteuid();
  const uid_t other = me == kNobody ? 1 : kNobody;
  // volume
  EXPECT_EQ(os::dir_problem(fake_stat(S_IFDIR | 0755, me), DirRule::volume()), "");
  EXPECT_EQ(os::dir_problem(fake_stat(S_IFDIR | 01777, me), DirRule::volume()), "");
  EXPECT_EQ(os::dir_problem(fake_stat(S_IFDIR | 01777, 0), DirRule::volume()), "");
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 0777, me), DirRule::volume()), "sticky"));
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 0775, me), DirRule::volume()), "sticky"));
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 0755, other), DirRule::volume()),
                       "belongs to uid " + std::to_string(other)));
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 01777, other), DirRule::volume()), "belongs to uid"));
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFREG | 0755, me), DirRule::volume()), "not a directory"));
  // owned
  EXPECT_EQ(os::dir_problem(fake_stat(S_IFDIR | 0700, me), DirRule::owned_by(me)), "");
  EXPECT_EQ(os::dir_problem(fake_stat(S_IFDIR | 0755, me), DirRule::owned_by(me)), "");
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 0700, other), DirRule::owned_by(me)),
                       "belongs to uid " + std::to_string(other)));
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 0702, me), DirRule::owned_by(me)), "by everybody"));
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 01777, me), DirRule::owned_by(me)), "by everybody"));
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 0770, me), DirRule::owned_by(me)), "no --group"));
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 03770, me), DirRule::owned_by(me)), "no --group"));
  // joined: this uid or root, nobody else (no group)
  EXPECT_EQ(os::dir_problem(fake_stat(S_IFDIR | 0700, me), DirRule::joined()), "");
  EXPECT_EQ(os::dir_problem(fake_stat(S_IFDIR | 0755, 0), DirRule::joined()), "");
  EXPECT_TRUE(contains(os::dir_problem(fake_stat(S_IFDIR | 0700, other), DirRule::joined()), "belongs to uid"));
}

// ---- Dir::open of a directory ----

TEST(DirOpen, RefusesSymlinkToDirectory) {
  TempDir t;
  const std::string real = make_dir(t, "real", 0700);
  const std::string link = t.path() + "/link";
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  auto e = error_of([&] { Dir::open(link, DirRule::volume()); });
  ASSERT_TRUE(e) << "a symbolic link to a directory was accepted";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), link)) << e->what();
  e = error_of([&] { (void)Dir::try_open(link, DirRule::owned_by(::geteuid())); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  // The real directory itself is fine.
  EXPECT_TRUE(Dir::open(real, DirRule::volume()).valid());
}

// The message should say what the entry is. Dir::try_open maps ELOOP to "a
// symbolic link", but open(O_DIRECTORY | O_NOFOLLOW) on a symbolic link fails
// with ENOTDIR on Linux, so a runtime dir given as a symlink to a directory
// (common with hostPath volumes) is reported as "not a directory".
TEST(DirOpen, SymlinkToDirectoryMessageSaysSymbolicLink) {
  TempDir t;
  const std::string real = make_dir(t, "real", 0700);
  const std::string link = t.path() + "/link";
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  auto e = error_of([&] { Dir::open(link, DirRule::volume()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), "symbolic link")) << "message: " << e->what();
}

TEST(DirOpen, RefusesRegularFileAsDirectory) {
  TempDir t;
  const std::string f = t.path() + "/file";
  write_file(f, "x");
  auto e = error_of([&] { Dir::open(f, DirRule::volume()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), f)) << e->what();
}

TEST(DirOpen, MissingDirectory) {
  TempDir t;
  const std::string missing = t.path() + "/missing";
  auto e = error_of([&] { Dir::open(missing, DirRule::volume()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::not_found) << e->what();
  EXPECT_TRUE(contains(e->what(), missing)) << e->what();
  EXPECT_FALSE(Dir::try_open(missing, DirRule::volume()).has_value());
  EXPECT_FALSE(Dir::try_open(missing, DirRule::owned_by(::geteuid())).has_value());
}

TEST(DirOpen, KeepsPathAndOwner) {
  TempDir t;
  Dir d = own(t);
  EXPECT_TRUE(d.valid());
  EXPECT_GE(d.fd(), 0);
  EXPECT_EQ(d.path(), t.path());
  EXPECT_EQ(d.path_of("x"), t.path() + "/x");
  EXPECT_EQ(d.owner(), ::geteuid());
}

// ---- DirRule::volume ----

TEST(DirRuleVolume, WorldWritableNeedsSticky) {
  TempDir t;
  const std::string open_dir = make_dir(t, "open", 0777);
  ASSERT_EQ(lstat_of(open_dir).st_mode & 07777, 0777u);
  auto e = error_of([&] { Dir::open(open_dir, DirRule::volume()); });
  ASSERT_TRUE(e) << "a 0777 directory without the sticky bit was accepted as a volume";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), open_dir)) << e->what();
  EXPECT_TRUE(contains(e->what(), "sticky")) << e->what();

  const std::string group_dir = make_dir(t, "groupw", 0770);
  e = error_of([&] { Dir::open(group_dir, DirRule::volume()); });
  ASSERT_TRUE(e) << "a group-writable directory without the sticky bit was accepted as a volume";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();

  const std::string tmp_like = make_dir(t, "sticky", 01777);
  ASSERT_EQ(lstat_of(tmp_like).st_mode & 07777, 01777u);
  EXPECT_TRUE(Dir::open(tmp_like, DirRule::volume()).valid());

  const std::string plain = make_dir(t, "plain", 0755);
  EXPECT_TRUE(Dir::open(plain, DirRule::volume()).valid());
  EXPECT_TRUE(Dir::try_open(plain, DirRule::volume()).has_value());
}

TEST(DirRuleVolume, RefusesAnotherUsersDirectory) {
  SKIP_UNLESS_ROOT();
  TempDir t;
  const std::string theirs = make_dir(t, "theirs", 0755);
  ASSERT_EQ(::chown(theirs.c_str(), kNobody, kNobody), 0);
  auto e = error_of([&] { Dir::open(theirs, DirRule::volume()); });
  ASSERT_TRUE(e) << "a volume owned by uid 65534 was accepted by root";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), "uid 65534")) << e->what();
  EXPECT_TRUE(contains(e->what(), theirs)) << e->what();
  // Even sticky: it is still theirs.
  ASSERT_EQ(::chmod(theirs.c_str(), 01777), 0);
  EXPECT_EQ(error_of([&] { Dir::open(theirs, DirRule::volume()); }).value_or(Error(Errc::system, "")).code(),
            Errc::untrusted);
}

// ---- DirRule::owned_by ----

TEST(DirRuleOwned, RefusesAnotherOwner) {
  SKIP_UNLESS_ROOT();
  TempDir t;
  const std::string theirs = make_dir(t, "theirs", 0700);
  ASSERT_EQ(::chown(theirs.c_str(), kNobody, kNobody), 0);
  auto e = error_of([&] { Dir::open(theirs, DirRule::owned_by(::geteuid())); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), "uid 65534")) << e->what();
  // Owned by 65534 is what owned_by(65534) wants.
  EXPECT_TRUE(Dir::open(theirs, DirRule::owned_by(kNobody)).valid());
}

TEST(DirRuleOwned, RefusesWorldWritable) {
  TempDir t;
  for (mode_t m : {mode_t(0702), mode_t(0777), mode_t(01777), mode_t(01703)}) {
    const std::string p = make_dir(t, "w" + std::to_string(m), m);
    auto e = error_of([&] { Dir::open(p, DirRule::owned_by(::geteuid())); });
    ASSERT_TRUE(e) << "mode " << std::oct << m << " accepted";
    EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
    EXPECT_TRUE(contains(e->what(), "everybody")) << e->what();
  }
}

TEST(DirRuleOwned, RefusesGroupWritableWithoutSharedGroup) {
  ASSERT_FALSE(os::has_shared_group());
  TempDir t;
  for (mode_t m : {mode_t(0770), mode_t(0730), mode_t(03770)}) {
    const std::string p = make_dir(t, "g" + std::to_string(m), m);
    auto e = error_of([&] { Dir::open(p, DirRule::owned_by(::geteuid())); });
    ASSERT_TRUE(e) << "mode " << std::oct << m << " accepted without --group";
    EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
    EXPECT_TRUE(contains(e->what(), "group")) << e->what();
  }
  const std::string ok = make_dir(t, "ok", 0750);
  EXPECT_TRUE(Dir::open(ok, DirRule::owned_by(::geteuid())).valid());
}

// ---- Dir::create ----

TEST(DirCreate, ModeIsExactlyWhatIsAskedWhateverTheUmask) {
  TempDir t;
  Dir d = own(t);
  {
    UmaskGuard u(077);
    Fd fd = d.create("wide", O_RDWR, 0644);
    ASSERT_TRUE(fd);
    EXPECT_EQ(lstat_of(t.path() + "/wide").st_mode & 07777, 0644u) << "umask 077 narrowed the mode";
  }
  {
    UmaskGuard u(0);
    Fd fd = d.create("narrow", O_RDWR, 0600);
    ASSERT_TRUE(fd);
    EXPECT_EQ(lstat_of(t.path() + "/narrow").st_mode & 07777, 0600u) << "umask 0 widened the mode";
  }
  {
    UmaskGuard u(0);
    Fd fd = d.try_create("narrow2", O_RDWR, 0400);
    ASSERT_TRUE(fd);
    EXPECT_EQ(lstat_of(t.path() + "/narrow2").st_mode & 07777, 0400u);
  }
  struct stat st = lstat_of(t.path() + "/wide");
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_uid, ::geteuid());
}

TEST(DirCreate, RefusesExistingName) {
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/taken", "original");
  auto e = error_of([&] { d.create("taken", O_RDWR, 0600); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::already_exists) << e->what();
  EXPECT_TRUE(contains(e->what(), t.path() + "/taken")) << e->what();
  EXPECT_EQ(read_file(t.path() + "/taken"), "original");
  errno = 0;
  Fd fd = d.try_create("taken", O_RDWR, 0600);
  EXPECT_FALSE(fd);
  EXPECT_EQ(errno, EEXIST);
}

TEST(DirCreate, NeverFollowsDanglingSymlink) {
  TempDir t;
  Dir d = own(t);
  const std::string target = t.path() + "/target";
  ASSERT_EQ(::symlink(target.c_str(), (t.path() + "/dangling").c_str()), 0);
  auto e = error_of([&] { d.create("dangling", O_RDWR, 0600); });
  ASSERT_TRUE(e) << "create through a dangling symlink succeeded";
  EXPECT_EQ(e->code(), Errc::already_exists) << e->what();
  EXPECT_FALSE(exists_nofollow(target)) << "the link's target was created";
  EXPECT_FALSE(d.try_create("dangling", O_RDWR, 0600));
  EXPECT_FALSE(exists_nofollow(target)) << "the link's target was created";
  EXPECT_TRUE(S_ISLNK(lstat_of(t.path() + "/dangling").st_mode));
}

// mpod's own names are long (a registration is 32 hex digits, an fbarray
// "fbarray_memseg-2048k-0-0_<32 hex>"): past any small-string buffer.
TEST(DirCreate, LongNamesCreatedExactly) {
  TempDir t;
  Dir d = own(t);
  const std::string a = "fbarray_memseg-2048k-0-0_0123456789abcdef0123456789abcdef";
  const std::string b = "0123456789abcdef0123456789abcdef";
  const std::string c = "a-lock-file-with-a-name-longer-than-sixteen-bytes";
  Fd fa = d.create(a, O_RDWR, 0600);
  Fd fb = d.try_create(b, O_RDWR, 0600);
  bool created = false;
  Fd fc = d.open_or_create(c, O_RDWR, 0600, ::geteuid(), &created);
  ASSERT_TRUE(fa);
  ASSERT_TRUE(fb);
  ASSERT_TRUE(fc);
  EXPECT_TRUE(created);
  auto names = d.list();
  std::sort(names.begin(), names.end());
  std::vector<std::string> want{a, b, c};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(names, want);
  EXPECT_TRUE(d.open(a, O_RDONLY, ::geteuid()));
  EXPECT_TRUE(d.open(b, O_RDONLY, ::geteuid()));
  EXPECT_EQ(d.remove_unused(c), Dir::Removal::removed);
}

// ---- Dir::open / try_open of an entry ----

TEST(DirOpenEntry, OpensOwnRegularFile) {
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/f", "hello");
  Fd fd = d.open("f", O_RDONLY, ::geteuid());
  ASSERT_TRUE(fd);
  char buf[8] = {};
  EXPECT_EQ(::read(fd.get(), buf, sizeof buf), 5);
  EXPECT_STREQ(buf, "hello");
  EXPECT_TRUE(d.try_open("f", O_RDWR, os::kAnyOwner));
}

TEST(DirOpenEntry, MissingEntry) {
  TempDir t;
  Dir d = own(t);
  errno = 0;
  EXPECT_FALSE(d.try_open("nope", O_RDONLY, ::geteuid()));
  EXPECT_EQ(errno, ENOENT);
  auto e = error_of([&] { d.open("nope", O_RDONLY, ::geteuid()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::not_found) << e->what();
}

TEST(DirOpenEntry, RefusesSymlink) {
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/victim", "secret");
  ASSERT_EQ(::symlink((t.path() + "/victim").c_str(), (t.path() + "/link").c_str()), 0);
  for (int flags : {O_RDONLY, O_RDWR}) {
    auto e = error_of([&] { d.open("link", flags, os::kAnyOwner); });
    ASSERT_TRUE(e) << "a symbolic link was followed";
    EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
    EXPECT_TRUE(contains(e->what(), t.path() + "/link")) << e->what();
    EXPECT_TRUE(contains(e->what(), "symbolic link")) << e->what();
    e = error_of([&] { (void)d.try_open("link", flags, ::geteuid()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  }
  // A dangling one too.
  ASSERT_EQ(::symlink((t.path() + "/nowhere").c_str(), (t.path() + "/dangling").c_str()), 0);
  auto e = error_of([&] { (void)d.try_open("dangling", O_RDWR, ::geteuid()); });
  ASSERT_TRUE(e) << "a dangling symlink was reported as absent";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_EQ(read_file(t.path() + "/victim"), "secret");
}

TEST(DirOpenEntry, RefusesHardLink) {
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/a", "shared inode");
  ASSERT_EQ(::link((t.path() + "/a").c_str(), (t.path() + "/b").c_str()), 0);
  ASSERT_EQ(lstat_of(t.path() + "/b").st_nlink, 2u);
  for (const char* name : {"a", "b"}) {
    auto e = error_of([&] { d.open(name, O_RDWR, ::geteuid()); });
    ASSERT_TRUE(e) << name << ": a file with two links was accepted";
    EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
    EXPECT_TRUE(contains(e->what(), t.path() + "/" + name)) << e->what();
    EXPECT_TRUE(contains(e->what(), "2 hard links")) << e->what();
    e = error_of([&] { (void)d.try_open(name, O_RDONLY, os::kAnyOwner); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  }
  EXPECT_EQ(read_file(t.path() + "/a"), "shared inode");
}

// Whether `f` threw untrusted naming `what`: an exit code a child can return.
int child_check(const std::function<void()>& f, const std::string& what) {
  try {
    f();
  } catch (const Error& e) {
    if (e.code() != Errc::untrusted) return 2;
    if (!contains(e.what(), what)) return 3;
    return 0;
  } catch (...) {
    return 4;
  }
  return 1;  // accepted
}

TEST(DirOpenEntry, RefusesFifoWithoutBlocking) {
  TempDir t;
  Dir d = own(t);
  const std::string fifo = t.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // In a child with an alarm: opening a FIFO with nobody at the other end
  // blocks forever unless O_NONBLOCK is given.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(10);
    int step = 0;
    for (int flags : {O_RDONLY, O_WRONLY, O_RDWR}) {
      ++step;
      int rc = child_check([&] { d.open("fifo", flags, ::geteuid()); }, "FIFO");
      if (rc) ::_exit(10 * step + rc);
      rc = child_check([&] { (void)d.try_open("fifo", flags, os::kAnyOwner); }, fifo);
      if (rc) ::_exit(10 * step + 5 + rc);
    }
    int rc = child_check([&] { (void)d.open_or_create("fifo", O_RDWR, 0600, ::geteuid()); }, "FIFO");
    ::_exit(rc ? 40 + rc : 0);
  }
  int rc = wait_exit(pid);
  EXPECT_NE(rc, 128 + SIGALRM) << "opening a FIFO blocked";
  EXPECT_EQ(rc, 0) << "step*10 + (1 accepted, 2 wrong code, 3 message, 4 other exception; +5 for try_open; 40+ "
                      "open_or_create)";
  EXPECT_TRUE(S_ISFIFO(lstat_of(fifo).st_mode));
}

TEST(DirOpenEntry, RefusesDirectory) {
  TempDir t;
  Dir d = own(t);
  make_dir(t, "sub", 0700);
  for (int flags : {O_RDONLY, O_RDWR, O_WRONLY}) {
    auto e = error_of([&] { d.open("sub", flags, ::geteuid()); });
    ASSERT_TRUE(e) << "a directory was opened as a file (flags " << flags << ")";
    EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
    EXPECT_TRUE(contains(e->what(), t.path() + "/sub")) << e->what();
    EXPECT_TRUE(contains(e->what(), "directory")) << e->what();
    e = error_of([&] { (void)d.try_open("sub", flags, os::kAnyOwner); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  }
}

TEST(DirOpenEntry, RefusesSocket) {
  TempDir t;
  Dir d = own(t);
  Fd s = os::bind_datagram_socket(d, "sock", 0600);
  auto e = error_of([&] { d.open("sock", O_RDWR, ::geteuid()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), "socket")) << e->what();
}

TEST(DirOpenEntry, OwnerRequiredUnlessAnyOwner) {
  SKIP_UNLESS_ROOT();
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/theirs", "their data");
  ASSERT_EQ(::fchownat(d.fd(), "theirs", kNobody, kNobody, AT_SYMLINK_NOFOLLOW), 0);
  auto e = error_of([&] { d.open("theirs", O_RDWR, ::geteuid()); });
  ASSERT_TRUE(e) << "another owner's file was accepted";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), t.path() + "/theirs")) << e->what();
  EXPECT_TRUE(contains(e->what(), "uid 65534")) << e->what();
  e = error_of([&] { (void)d.try_open("theirs", O_RDONLY, ::geteuid()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted);
  // Asked for by its owner, or by anybody: accepted.
  EXPECT_TRUE(d.open("theirs", O_RDONLY, kNobody));
  Fd fd = d.open("theirs", O_RDONLY, os::kAnyOwner);
  ASSERT_TRUE(fd);
  char buf[16] = {};
  EXPECT_EQ(::read(fd.get(), buf, sizeof buf), 10);
  EXPECT_STREQ(buf, "their data");
}

// ---- open_or_create ----

TEST(DirOpenOrCreate, CreatesThenOpens) {
  TempDir t;
  Dir d = own(t);
  bool created = false;
  {
    UmaskGuard u(077);
    Fd fd = d.open_or_create("lock", O_RDWR, 0640, ::geteuid(), &created);
    ASSERT_TRUE(fd);
    EXPECT_TRUE(created);
    ASSERT_EQ(::write(fd.get(), "one", 3), 3);
  }
  EXPECT_EQ(lstat_of(t.path() + "/lock").st_mode & 07777, 0640u);
  created = true;
  Fd fd = d.open_or_create("lock", O_RDWR, 0600, ::geteuid(), &created);
  ASSERT_TRUE(fd);
  EXPECT_FALSE(created);
  char buf[4] = {};
  EXPECT_EQ(::pread(fd.get(), buf, 3, 0), 3);
  EXPECT_STREQ(buf, "one") << "opening an existing file changed it";
  EXPECT_EQ(lstat_of(t.path() + "/lock").st_mode & 07777, 0640u) << "opening an existing file changed its mode";
}

TEST(DirOpenOrCreate, RefusesPlantedSymlink) {
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/victim", "keep");
  ASSERT_EQ(::symlink((t.path() + "/victim").c_str(), (t.path() + "/lock").c_str()), 0);
  ASSERT_EQ(::symlink((t.path() + "/absent").c_str(), (t.path() + "/lock2").c_str()), 0);
  bool created = true;
  auto e = error_of([&] { (void)d.open_or_create("lock", O_RDWR, 0600, ::geteuid(), &created); });
  ASSERT_TRUE(e) << "open_or_create followed a symbolic link";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), "symbolic link")) << e->what();
  e = error_of([&] { (void)d.open_or_create("lock2", O_RDWR, 0600, ::geteuid(), &created); });
  ASSERT_TRUE(e) << "open_or_create followed a dangling symbolic link";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_FALSE(exists_nofollow(t.path() + "/absent")) << "the dangling link's target was created";
  EXPECT_EQ(read_file(t.path() + "/victim"), "keep");
}

// ---- remove_unused ----

TEST(DirRemoveUnused, AbsentAndUnusedRegularFile) {
  TempDir t;
  Dir d = own(t);
  EXPECT_EQ(d.remove_unused("nothing"), Dir::Removal::absent);
  write_file(t.path() + "/stale", "old");
  EXPECT_EQ(d.remove_unused("stale"), Dir::Removal::removed);
  EXPECT_FALSE(exists_nofollow(t.path() + "/stale"));
  EXPECT_EQ(d.remove_unused("stale"), Dir::Removal::absent);
}

TEST(DirRemoveUnused, SymlinkRemovedVictimUntouched) {
  TempDir t;
  Dir d = own(t);
  const std::string victim = t.path() + "/victim";
  write_file(victim, "precious");
  const std::string victim_dir = make_dir(t, "victim_dir", 0700);
  write_file(victim_dir + "/inside", "also precious");
  ASSERT_EQ(::symlink(victim.c_str(), (t.path() + "/link").c_str()), 0);
  ASSERT_EQ(::symlink(victim_dir.c_str(), (t.path() + "/dirlink").c_str()), 0);
  EXPECT_EQ(d.remove_unused("link"), Dir::Removal::removed);
  EXPECT_EQ(d.remove_unused("dirlink"), Dir::Removal::removed);
  EXPECT_FALSE(exists_nofollow(t.path() + "/link"));
  EXPECT_FALSE(exists_nofollow(t.path() + "/dirlink"));
  EXPECT_EQ(read_file(victim), "precious");
  EXPECT_EQ(read_file(victim_dir + "/inside"), "also precious");
  EXPECT_TRUE(S_ISDIR(lstat_of(victim_dir).st_mode));
}

TEST(DirRemoveUnused, HardLinkRemovedOtherNameIntact) {
  TempDir t;
  Dir d = own(t);
  const std::string other = t.path() + "/other";
  write_file(other, "other's data");
  ASSERT_EQ(::link(other.c_str(), (t.path() + "/planted").c_str()), 0);
  EXPECT_EQ(d.remove_unused("planted"), Dir::Removal::removed);
  EXPECT_FALSE(exists_nofollow(t.path() + "/planted"));
  EXPECT_EQ(read_file(other), "other's data");
  EXPECT_EQ(lstat_of(other).st_nlink, 1u);
}

TEST(DirRemoveUnused, FifoRemoved) {
  TempDir t;
  Dir d = own(t);
  ASSERT_EQ(::mkfifo((t.path() + "/fifo").c_str(), 0600), 0);
  pid_t pid = ::fork();  // with an alarm, in case it opens the FIFO
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(10);
    try {
      ::_exit(d.remove_unused("fifo") == Dir::Removal::removed ? 0 : 1);
    } catch (...) {
      ::_exit(2);
    }
  }
  EXPECT_EQ(wait_exit(pid), 0);
  EXPECT_FALSE(exists_nofollow(t.path() + "/fifo"));
}

TEST(DirRemoveUnused, DirectoryRefused) {
  TempDir t;
  Dir d = own(t);
  make_dir(t, "sub", 0700);
  auto e = error_of([&] { (void)d.remove_unused("sub"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), t.path() + "/sub")) << e->what();
  EXPECT_TRUE(S_ISDIR(lstat_of(t.path() + "/sub").st_mode));
}

TEST(DirRemoveUnused, FileLockedByAnotherProcessIsInUse) {
  TempDir t;
  Dir d = own(t);
  const std::string path = t.path() + "/held";
  write_file(path, "in use");
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    ::close(release[1]);
    ::alarm(30);
    char ok = '0';
    try {
      Fd fd = d.open("held", O_RDWR, ::geteuid());
      if (os::try_lock(fd.get(), os::LockKind::shared, path)) ok = '1';
      (void)!::write(ready[1], &ok, 1);
      char b;
      (void)!::read(release[0], &b, 1);  // EOF when the parent closes its end
      ::_exit(ok == '1' ? 0 : 1);
    } catch (...) {
      (void)!::write(ready[1], &ok, 1);
      ::_exit(2);
    }
  }
  ::close(ready[1]);
  ::close(release[0]);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ::close(ready[0]);
  if (ok != '1') {
    ::close(release[1]);
    wait_exit(pid);
    FAIL() << "the child could not take its lock";
  }
  EXPECT_EQ(d.remove_unused("held"), Dir::Removal::in_use);
  EXPECT_EQ(read_file(path), "in use") << "a file in use was removed";
  ::close(release[1]);
  EXPECT_EQ(wait_exit(pid), 0);
  EXPECT_EQ(d.remove_unused("held"), Dir::Removal::removed);
  EXPECT_FALSE(exists_nofollow(path));
}

// ---- rename_noreplace ----

TEST(DirRename, NeverReplaces) {
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/from", "from");
  write_file(t.path() + "/to", "to");
  auto e = error_of([&] { d.rename_noreplace("from", "to"); });
  ASSERT_TRUE(e) << "rename replaced an existing entry";
  EXPECT_EQ(e->code(), Errc::already_exists) << e->what();
  EXPECT_EQ(read_file(t.path() + "/from"), "from");
  EXPECT_EQ(read_file(t.path() + "/to"), "to");
  // A planted symlink at the destination is not replaced either.
  ASSERT_EQ(::symlink("/nonexistent", (t.path() + "/link").c_str()), 0);
  e = error_of([&] { d.rename_noreplace("from", "link"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::already_exists);
  EXPECT_TRUE(S_ISLNK(lstat_of(t.path() + "/link").st_mode));
  // To a free name: moved.
  d.rename_noreplace("from", "free");
  EXPECT_FALSE(exists_nofollow(t.path() + "/from"));
  EXPECT_EQ(read_file(t.path() + "/free"), "from");
}

// ---- subdirectories, unnamed files, links, listing ----

TEST(DirSubdir, MakeSubdirWithExactModeAndReopen) {
  TempDir t;
  Dir d = own(t);
  {
    UmaskGuard u(077);
    Dir sub = d.make_subdir("sub", 0750, DirRule::owned_by(::geteuid()));
    EXPECT_TRUE(sub.valid());
    EXPECT_EQ(sub.path(), t.path() + "/sub");
  }
  EXPECT_EQ(lstat_of(t.path() + "/sub").st_mode & 07777, 0750u);
  // Existing: opened and checked, mode left alone.
  Dir again = d.make_subdir("sub", 0700, DirRule::owned_by(::geteuid()));
  EXPECT_TRUE(again.valid());
  EXPECT_EQ(lstat_of(t.path() + "/sub").st_mode & 07777, 0750u);
  EXPECT_TRUE(d.try_open_subdir("sub", DirRule::owned_by(::geteuid())).has_value());
  EXPECT_FALSE(d.try_open_subdir("none", DirRule::owned_by(::geteuid())).has_value());
}

TEST(DirSubdir, RefusesPlantedSubdir) {
  TempDir t;
  Dir d = own(t);
  const std::string real = make_dir(t, "real", 0700);
  ASSERT_EQ(::symlink(real.c_str(), (t.path() + "/link").c_str()), 0);
  auto e = error_of([&] { d.make_subdir("link", 0700, DirRule::owned_by(::geteuid())); });
  ASSERT_TRUE(e) << "make_subdir followed a symbolic link";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), "symbolic link")) << e->what();
  e = error_of([&] { (void)d.try_open_subdir("link", DirRule::owned_by(::geteuid())); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  write_file(t.path() + "/file", "x");
  e = error_of([&] { (void)d.try_open_subdir("file", DirRule::owned_by(::geteuid())); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  make_dir(t, "open", 0777);
  e = error_of([&] { d.make_subdir("open", 0700, DirRule::owned_by(::geteuid())); });
  ASSERT_TRUE(e) << "an existing world-writable subdirectory was accepted";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_EQ(lstat_of(t.path() + "/open").st_mode & 07777, 0777u) << "make_subdir chmodded what it did not make";
}

TEST(DirFiles, UnnamedFileLinkedIntoPlace) {
  TempDir t;
  Dir d = own(t);
  UmaskGuard u(077);
  Fd fd = d.create_unnamed(0640);
  if (!fd) GTEST_SKIP() << "the filesystem of " << t.path() << " has no O_TMPFILE";
  ASSERT_EQ(::write(fd.get(), "unnamed", 7), 7);
  EXPECT_TRUE(d.list().empty()) << "an unnamed file has a name";
  d.link_unnamed(fd.get(), "named");
  EXPECT_EQ(read_file(t.path() + "/named"), "unnamed");
  EXPECT_EQ(lstat_of(t.path() + "/named").st_mode & 07777, 0640u);
  write_file(t.path() + "/taken", "keep");
  Fd fd2 = d.create_unnamed(0600);
  ASSERT_TRUE(fd2);
  auto e = error_of([&] { d.link_unnamed(fd2.get(), "taken"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::already_exists) << e->what();
  EXPECT_EQ(read_file(t.path() + "/taken"), "keep");
}

TEST(DirFiles, RemoveListStat) {
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/a", "a");
  write_file(t.path() + "/b", "b");
  ASSERT_EQ(::link((t.path() + "/a").c_str(), (t.path() + "/c").c_str()), 0);
  EXPECT_EQ(lstat_of(t.path() + "/a").st_nlink, 2u);
  auto names = d.list();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(d.remove("c"));
  EXPECT_FALSE(d.remove("c"));
  EXPECT_EQ(read_file(t.path() + "/a"), "a");
  ASSERT_EQ(::symlink((t.path() + "/a").c_str(), (t.path() + "/l").c_str()), 0);
  auto st = d.stat("l");
  ASSERT_TRUE(st);
  EXPECT_TRUE(S_ISLNK(st->st_mode)) << "stat followed the link";
  EXPECT_TRUE(d.remove("l"));
  EXPECT_EQ(read_file(t.path() + "/a"), "a") << "remove followed the link";
  EXPECT_FALSE(d.stat("l"));
  make_dir(t, "sub", 0700);
  auto e = error_of([&] { d.remove("sub"); });
  ASSERT_TRUE(e) << "remove() removed a directory";
  EXPECT_TRUE(d.remove_dir("sub"));
  EXPECT_FALSE(d.remove_dir("sub"));
  EXPECT_EQ(d.age_seconds("missing"), 0);
  EXPECT_GE(d.age_seconds("a"), 0);
  EXPECT_LT(d.age_seconds("a"), 60);
}

TEST(DirRemoveUnused, SocketRemoved) {
  TempDir t;
  Dir d = own(t);
  Fd s = os::bind_datagram_socket(d, "sock", 0600);
  EXPECT_EQ(d.remove_unused("sock"), Dir::Removal::removed);
  EXPECT_FALSE(exists_nofollow(t.path() + "/sock"));
}

// ---- sockets ----

std::vector<std::string> bind_leftovers(const Dir& d) {
  std::vector<std::string> out;
  for (auto& n : d.list())
    if (n.rfind(".bind-", 0) == 0) out.push_back(n);
  return out;
}

TEST(DirSocket, BindsWithModeAndLeavesNothingBehind) {
  TempDir t;
  Dir d = own(t);
  for (mode_t umask_value : {mode_t(0), mode_t(077)}) {
    UmaskGuard u(umask_value);
    const std::string name = "sock" + std::to_string(umask_value);
    Fd s = os::bind_datagram_socket(d, name, 0600);
    ASSERT_TRUE(s);
    struct stat st = lstat_of(t.path() + "/" + name);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u) << "umask " << std::oct << umask_value;
    EXPECT_EQ(st.st_uid, ::geteuid());
  }
  EXPECT_TRUE(bind_leftovers(d).empty()) << bind_leftovers(d)[0];
}

TEST(DirSocket, NeverReplacesAnExistingName) {
  TempDir t;
  Dir d = own(t);
  write_file(t.path() + "/taken", "not a socket");
  auto e = error_of([&] { os::bind_datagram_socket(d, "taken", 0600); });
  ASSERT_TRUE(e) << "bind replaced a regular file";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), t.path() + "/taken")) << e->what();
  EXPECT_EQ(read_file(t.path() + "/taken"), "not a socket");
  EXPECT_TRUE(S_ISREG(lstat_of(t.path() + "/taken").st_mode));
  EXPECT_TRUE(bind_leftovers(d).empty()) << "a failed bind left " << bind_leftovers(d)[0];
  // Nor another socket: the first binder keeps its name.
  Fd first = os::bind_datagram_socket(d, "sock", 0600);
  const ino_t ino = lstat_of(t.path() + "/sock").st_ino;
  e = error_of([&] { os::bind_datagram_socket(d, "sock", 0600); });
  ASSERT_TRUE(e) << "a second bind replaced the first socket";
  EXPECT_EQ(lstat_of(t.path() + "/sock").st_ino, ino);
  EXPECT_TRUE(bind_leftovers(d).empty());
}

TEST(DirSocket, OpenSocketNodeChecksWhatItOpens) {
  TempDir t;
  Dir d = own(t);
  EXPECT_FALSE(os::open_socket_node(d, "missing", ::geteuid())) << "a missing socket gave a handle";
  write_file(t.path() + "/file", "x");
  auto e = error_of([&] { os::open_socket_node(d, "file", ::geteuid()); });
  ASSERT_TRUE(e) << "a regular file was accepted as a socket";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), "not a socket")) << e->what();
  e = error_of([&] { os::open_socket_node(d, "file", os::kAnyOwner); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), Errc::untrusted);
  // A symlink to a real socket is not followed.
  Fd s = os::bind_datagram_socket(d, "real", 0600);
  ASSERT_EQ(::symlink((t.path() + "/real").c_str(), (t.path() + "/link").c_str()), 0);
  e = error_of([&] { os::open_socket_node(d, "link", os::kAnyOwner); });
  ASSERT_TRUE(e) << "a symlink to a socket was followed";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(os::open_socket_node(d, "real", ::geteuid()));
}

TEST(DirSocket, OpenSocketNodeRefusesAnotherOwnersSocket) {
  SKIP_UNLESS_ROOT();
  TempDir t;
  Dir d = own(t);
  Fd s = os::bind_datagram_socket(d, "theirs", 0600);
  ASSERT_EQ(::fchownat(d.fd(), "theirs", kNobody, kNobody, AT_SYMLINK_NOFOLLOW), 0);
  auto e = error_of([&] { os::open_socket_node(d, "theirs", ::geteuid()); });
  ASSERT_TRUE(e) << "another owner's socket was accepted";
  EXPECT_EQ(e->code(), Errc::untrusted) << e->what();
  EXPECT_TRUE(contains(e->what(), "uid 65534")) << e->what();
  EXPECT_TRUE(os::open_socket_node(d, "theirs", kNobody));
  EXPECT_TRUE(os::open_socket_node(d, "theirs", os::kAnyOwner));
}

// Sends `text` from a fresh unbound socket to `dest`.
os::SendStatus send_text(const std::string& dest, const std::string& text) {
  Fd sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(sender);
  os::Part p{text.data(), text.size()};
  return os::send_datagram(sender.get(), dest, &p, 1, nullptr, 0);
}

std::optional<std::string> receive_text(int fd, os::Received* rx) {
  if (!(os::wait_readable(fd, -1, 2000) & 1)) return std::nullopt;
  char buf[256];
  if (!os::recv_datagram(fd, buf, sizeof buf, rx)) return std::nullopt;
  return std::string(buf, rx->len);
}

TEST(DirSocket, DatagramReachesTheBoundSocketThroughItsNode) {
  TempDir t;
  Dir d = own(t);
  Fd s = os::bind_datagram_socket(d, "chan", 0600);
  Fd node = os::open_socket_node(d, "chan", ::geteuid());
  ASSERT_TRUE(node);
  const std::string addr = os::socket_node_address(node.get());
  EXPECT_EQ(addr, "/proc/self/fd/" + std::to_string(node.get()));
  ASSERT_EQ(send_text(addr, "hello over the node"), os::SendStatus::ok);
  os::Received rx;
  auto got = receive_text(s.get(), &rx);
  ASSERT_TRUE(got) << "nothing received";
  EXPECT_EQ(*got, "hello over the node");
  EXPECT_FALSE(rx.truncated);
  EXPECT_TRUE(rx.has_creds) << "SO_PASSCRED not set";
  EXPECT_EQ(rx.uid, ::geteuid());
  EXPECT_TRUE(rx.fds.empty());
}

TEST(DirSocket, NodeHandleKeepsReachingTheSameSocketAfterRename) {
  TempDir t;
  Dir d = own(t);
  Fd a = os::bind_datagram_socket(d, "chan", 0600);
  Fd node = os::open_socket_node(d, "chan", ::geteuid());
  ASSERT_TRUE(node);
  // Someone moves the socket away and binds another at its name.
  d.rename_noreplace("chan", "moved");
  Fd b = os::bind_datagram_socket(d, "chan", 0600);
  ASSERT_EQ(send_text(os::socket_node_address(node.get()), "for a"), os::SendStatus::ok);
  os::Received rx;
  auto got = receive_text(a.get(), &rx);
  ASSERT_TRUE(got) << "the datagram did not reach the node that was opened";
  EXPECT_EQ(*got, "for a");
  char buf[16];
  EXPECT_FALSE(os::recv_datagram(b.get(), buf, sizeof buf, &rx)) << "the datagram went to the new name's socket";
}

TEST(DirSocket, SendToGoneSocketIsPeerGone) {
  TempDir t;
  Dir d = own(t);
  Fd node;
  {
    Fd s = os::bind_datagram_socket(d, "chan", 0600);
    node = os::open_socket_node(d, "chan", ::geteuid());
    ASSERT_TRUE(node);
  }  // closed: nobody is bound at the node any more
  EXPECT_EQ(send_text(os::socket_node_address(node.get()), "x"), os::SendStatus::peer_gone);
  EXPECT_EQ(send_text(t.path() + "/nothing-here", "x"), os::SendStatus::peer_gone);
}

}  // namespace
}  // namespace mpod
