// A hostile runtime directory must not be a way to attack a root process.
//
// Threat model: the runtime directory is a volume shared by every pod (like
// /tmp or a hostPath), and the processes of a domain may run as different
// uids (--group lets the members of one group in). Whoever can write a name
// there, another uid in the runtime directory or a group member inside the
// domain, may plant what a root primary or secondary later opens:
//   - symlinks and hard links to files it wants root to truncate, chmod or
//     chown (the "victims"),
//   - FIFOs that hang whoever opens them, directories where files belong,
//   - a domain directory of its own, or a loose runtime directory,
//   - replacements for another process's socket,
//   - datagrams: floods of marker bodies that pin descriptors, and messages
//     claiming another process's id,
//   - page-table entries that point a secondary's mappings anywhere.
// Each test plants one of these and checks that mpod refuses it or steps
// around it: the victim is unchanged, nothing hangs, and the error names the
// path at fault.
//
// Every victim is a file the test creates in its own scratch directory
// (root-owned, 0600, known contents), never a system file; other uids are the
// test ones (65534, group 4242). Needs root and /usr/bin/setpriv; the hugepage
// tests need free 2 MB hugepages. Each skips with the reason where these are missing.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "domain_fixture.hpp"
#include "mpod/process.hpp"

namespace mpod::test {
namespace {

using std::chrono::seconds;

// "Does not hang" means: done within this.
constexpr auto kLimit = seconds(30);

constexpr const char* kMember = "65534";  // nobody, in the test group with --group
constexpr const char* kGroup = "4242";    // a group only the tests use
const std::string kGroupOption = std::string("--group=") + kGroup;

std::optional<std::string> not_root() {
  if (geteuid() != 0) return "needs root: the process under attack runs as root";
  return std::nullopt;
}

std::optional<std::string> cannot_switch_uid() {
  if (auto r = not_root()) return r;
  if (access("/usr/bin/setpriv", X_OK) != 0) return "needs /usr/bin/setpriv (util-linux)";
  return std::nullopt;
}

[[noreturn]] void fail_setup(const std::string& what) {
  throw std::runtime_error("test setup: " + what + ": " + std::strerror(errno));
}

// ---- running as another uid ----

std::vector<std::string> as_user(const std::string& uid, const std::string& gid, std::vector<std::string> argv) {
  std::vector<std::string> a = {"/usr/bin/setpriv", "--reuid=" + uid, "--regid=" + gid, "--clear-groups"};
  a.insert(a.end(), argv.begin(), argv.end());
  return a;
}
// uid 65534 in group 4242: a member of a domain shared with --group=4242.
RunResult run_as_member(const std::vector<std::string>& argv) { return run(as_user(kMember, kGroup, argv), {}, kLimit); }
// uid 65534 outside the group: any other user of the shared runtime directory.
RunResult run_as_stranger(const std::vector<std::string>& argv) {
  return run(as_user(kMember, kMember, argv), {}, kLimit);
}

// ---- files ----

std::optional<struct stat> lstat_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return st;
}

bool exists(const std::string& path) { return lstat_of(path).has_value(); }

void make_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 || ::chmod(path.c_str(), mode) != 0) fail_setup("mkdir " + path);
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0 || ::write(fd, text.data(), text.size()) != ssize_t(text.size()) || ::fchmod(fd, mode) != 0)
    fail_setup("create " + path);
  ::close(fd);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What an attacker plants at a name mpod will open.
enum class Plant { symlink, hard_link, fifo };

void plant(Plant kind, const std::string& target, const std::string& at) {
  int r = kind == Plant::symlink     ? ::symlink(target.c_str(), at.c_str())
          : kind == Plant::hard_link ? ::link(target.c_str(), at.c_str())
                                     : ::mkfifo(at.c_str(), 0600);
  if (r != 0) fail_setup("plant at " + at);
}

// A file the attacker wants a root process to write, truncate, chmod or
// chown: created root-owned, 0600, with known contents. changes() says what
// differs from then (bytes, size, mode, owner, group), "" if nothing does.
class Victim {
 public:
  explicit Victim(std::string path) : path_(std::move(path)) {
    write_file(path_, "victim " + path_ + ": must never change\n", 0600);
    before_ = state();
  }
  // One on hugetlbfs, which takes no write(): one page, written through a mapping.
  static Victim on_hugetlbfs(std::string path, uint64_t page_size) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, off_t(page_size)) != 0) fail_setup("create " + path);
    void* p = ::mmap(nullptr, page_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) fail_setup("map " + path);
    const std::string text = "victim " + path + ": must never change\n";
    std::memcpy(p, text.data(), text.size());
    ::munmap(p, page_size);
    ::close(fd);
    Victim v;
    v.path_ = std::move(path);
    v.before_ = v.state();
    return v;
  }
  const std::string& path() const { return path_; }

  std::string changes() const {
    const State now = state();
    std::string d;
    if (!now.exists) return "it is gone";
    if (now.bytes != before_.bytes) d += " contents";
    if (now.size != before_.size) d += " size " + std::to_string(before_.size) + "->" + std::to_string(now.size);
    if (now.mode != before_.mode) d += " mode " + octal(before_.mode) + "->" + octal(now.mode);
    if (now.uid != before_.uid) d += " uid " + std::to_string(before_.uid) + "->" + std::to_string(now.uid);
    if (now.gid != before_.gid) d += " gid " + std::to_string(before_.gid) + "->" + std::to_string(now.gid);
    return d.empty() ? "" : path_ + " changed:" + d;
  }

 private:
  Victim() = default;
  struct State {
    bool exists = false;
    std::string bytes;
    off_t size = 0;
    mode_t mode = 0;
    uid_t uid = 0;
    gid_t gid = 0;
  };
  State state() const {
    State s;
    auto st = lstat_of(path_);
    if (!st) return s;
    s = {true, read_file(path_), st->st_size, mode_t(st->st_mode & 07777), st->st_uid, st->st_gid};
    return s;
  }
  static std::string octal(mode_t m) {
    char b[16];
    std::snprintf(b, sizeof b, "0%o", unsigned(m));
    return b;
  }
  std::string path_;
  State before_;
};

// Whether `output` names `path` itself: an occurrence not continued by more
// of a name (so "<rt>/<prefix>" does not count as naming "<rt>").
bool names(const std::string& output, const std::string& path) {
  auto name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; };
  for (size_t at = output.find(path); at != std::string::npos; at = output.find(path, at + 1)) {
    const size_t end = at + path.size();
    if (end == output.size()) return true;
    if (name_char(output[end])) continue;
    if (output[end] == '/' && end + 1 < output.size() && (name_char(output[end + 1]) || output[end + 1] == '.'))
      continue;
    return true;
  }
  return false;
}

// Descriptors a process has open, all of them or those open on `target`.
size_t fd_count(pid_t pid, const std::string& target = "") {
  size_t n = 0;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    if (target.empty()) ++n;
    else n += std::filesystem::read_symlink(e.path(), ec) == target;
  }
  return n;
}

std::string id_after(const std::string& output, const std::string& tag) {
  const auto at = output.find(tag);
  return at == std::string::npos ? "" : output.substr(at + tag.size(), 32);
}

std::string random_id_hex() { return ProcessId::random().hex(); }

// A mounted 2 MB hugetlbfs, from /proc/mounts.
std::optional<std::string> huge_dir_2mb() {
  std::ifstream mounts("/proc/mounts");
  std::string dev, path, type, opts, line;
  while (std::getline(mounts, line)) {
    std::istringstream in(line);
    in >> dev >> path >> type >> opts;
    if (type == "hugetlbfs" && contains(opts, "pagesize=2M")) return path;
  }
  return std::nullopt;
}

// Removes a path when the test ends, however it ends (names planted outside the test's directories).
struct RemoveAtExit {
  std::string path;
  ~RemoveAtExit() { ::unlink(path.c_str()); }
};

// The fbarray page-table element the tests rewrite (src/memory/memory_layout.hpp).
struct Memseg {
  uint64_t addr, len, file_offset, page_size;
};

class HostileDirTest : public DomainTest {
 protected:
  void SetUp() override {
    DomainTest::SetUp();
    // The runtime directory stands for a volume every pod (every uid) can write: sticky, like /tmp.
    ::chmod(rt().c_str(), 01777);
  }

  const std::string& rt() const { return dir_.path(); }
  std::string at(const std::string& name) const { return domain_dir() + "/" + name; }
  std::string victim_path(const std::string& name) const { return scratch_.path() + "/" + name; }
  std::string socket_of(const std::string& id) const { return at("mp/" + id + ".sock"); }

  // The domain directory (and `subdirs`) made by root before the primary
  // starts, so that names can be planted in it.
  void precreate_domain(std::vector<std::string> subdirs = {}, mode_t mode = 0700) {
    make_dir(domain_dir(), mode);
    for (auto& d : subdirs) make_dir(at(d), 0700);
  }

  // How the start of a primary ended: READY (it still runs), an exit, or neither within kLimit.
  struct Start {
    Child child;
    bool ready = false;
    int code = -1;  // its exit code once it exited; -1 while it runs
    std::string output() const { return child.output(); }
    bool hung() const { return !ready && code == -1; }
    bool exited_with_error() const { return code > 0 && code < 128; }  // not killed by a signal
  };
  Start launch_primary(std::vector<std::string> runtime = {"--no-huge"}) {
    Start s;
    s.child = Child::spawn(proc("primary", std::move(runtime)));
    s.ready = s.child.wait_for_output("READY", kLimit);
    if (!s.ready) s.code = s.child.wait(std::chrono::milliseconds(0));
    return s;
  }
  // Asks a running primary to stop; its exit code (-1 if it did not within kLimit).
  static int stop(Start& s) {
    if (!s.ready) return s.code;
    s.child.signal(SIGTERM);
    return s.child.wait(kLimit);
  }

  static std::string how_it_ended(const Start& s) {
    if (s.ready) return "it started (READY)";
    if (s.hung()) return "hung: neither READY nor an exit within " + std::to_string(kLimit.count()) + " s";
    return "exit code " + std::to_string(s.code);
  }
  // The primary refused to start, with an error (not a signal) naming `path`.
  static void expect_refused(const Start& s, const std::string& path) {
    EXPECT_TRUE(s.exited_with_error()) << "the primary should refuse to start; " << how_it_ended(s) << "\n"
                                       << s.output();
    EXPECT_TRUE(names(s.output(), path)) << "the error should name " << path << "\n" << s.output();
  }
  // The primary either started or refused, within kLimit: it did not hang, nor crash.
  static void expect_finished(const Start& s) {
    EXPECT_TRUE(s.ready || s.exited_with_error()) << how_it_ended(s) << "\n" << s.output();
  }

  // A secondary that attaches and exits, within kLimit.
  RunResult attach_within_limit() {
    auto r = proc("attach", {"--no-huge"});
    r.insert(r.begin() + 2, "--proc-type=secondary");
    return run(r, {}, kLimit);
  }
  // The member (65534:4242) asks the primary `id` for "echo"; expects the answer.
  void expect_member_answered(const std::string& id, const std::string& data) {
    auto r = run_as_member(proc("requester", {"--no-huge", kGroupOption}, {"--to=" + id, "--data=" + data}));
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "data=echo:" + data + "|")) << "the member should still be answered\n" << r.output;
  }

  // Plants `kind` at <domain>/lock, leading to `target`; the primary must
  // refuse, naming the lock. Returns the primary's output.
  std::string start_with_planted_lock(Plant kind, const std::string& target);
  // Plants `kind` at every name a primary clears away on start; checks it started and left the victims alone.
  void start_past_stale_names(Plant kind);
  // Plants a FIFO at `name`; checks the primary does not hang on it.
  void start_past_fifo(const std::string& name);
  // Floods the primary with COUNT unmatched marker bodies of NFDS descriptors each, as the member.
  struct Flood {
    size_t fds_before = 0, fds_after = 0, devnull_before = 0, devnull_after = 0;
    std::string primary_output;
  };
  Flood flood_marker_bodies(int count, int nfds);

  TempDir scratch_;  // victims live here: root-owned, 0700
};

// ---- 1. the lock file ----

std::string HostileDirTest::start_with_planted_lock(Plant kind, const std::string& target) {
  precreate_domain();
  plant(kind, target, at("lock"));
  Start s = launch_primary();
  stop(s);
  expect_refused(s, at("lock"));
  return s.output();
}

TEST_F(HostileDirTest, LockThatIsASymlinkToAVictimIsRefused) {
  MPOD_SKIP_UNLESS(not_root());
  Victim v(victim_path("victim"));
  const std::string out = start_with_planted_lock(Plant::symlink, v.path());
  EXPECT_EQ(v.changes(), "") << out;
}

TEST_F(HostileDirTest, LockThatIsADanglingSymlinkIsRefusedAndItsTargetNotCreated) {
  MPOD_SKIP_UNLESS(not_root());
  const std::string target = victim_path("should-not-exist");
  const std::string out = start_with_planted_lock(Plant::symlink, target);
  EXPECT_FALSE(exists(target)) << "the primary created the symlink's target " << target << "\n" << out;
}

TEST_F(HostileDirTest, LockThatIsAHardLinkToAVictimIsRefused) {
  MPOD_SKIP_UNLESS(not_root());
  Victim v(victim_path("victim"));
  const std::string out = start_with_planted_lock(Plant::hard_link, v.path());
  EXPECT_EQ(v.changes(), "") << out;
}

// ---- 2. a group member swaps the lock between two primaries ----

TEST_F(HostileDirTest, GroupMemberCannotPointTheLockAtAVictim) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Victim v(victim_path("victim"));
  Start first = launch_primary({"--no-huge", kGroupOption});
  ASSERT_TRUE(first.ready) << first.output();
  ASSERT_EQ(stop(first), 0) << first.output();
  // Whether these succeed is up to the directory's permissions; only the victim's fate is checked.
  const std::string lock = at("lock");
  auto ln = run_as_member({"ln", "-sfn", v.path(), lock});
  auto mv = run_as_member({"/bin/sh", "-c", "ln -sfn \"$1\" \"$2.evil\" && mv -fT \"$2.evil\" \"$2\"", "sh", v.path(), lock});
  const std::string member_out = "member's ln (exit " + std::to_string(ln.code) + "):\n" + ln.output +
                                 "member's mv (exit " + std::to_string(mv.code) + "):\n" + mv.output;
  Start second = launch_primary({"--no-huge", kGroupOption});
  stop(second);
  EXPECT_EQ(v.changes(), "") << member_out << "second primary:\n" << second.output();
}

// ---- 3, 4. names the primary clears away on start ----

void HostileDirTest::start_past_stale_names(Plant kind) {
  precreate_domain({"pages"});
  std::vector<Victim> victims;
  for (std::string name : {"config", "config.new", "fbarray_memseg-4k-0-0", "pages/map_0"}) {
    std::string victim_name = name;
    std::replace(victim_name.begin(), victim_name.end(), '/', '_');
    victims.emplace_back(victim_path(victim_name));
    plant(kind, victims.back().path(), at(name));
  }
  Start s = launch_primary();
  EXPECT_TRUE(s.ready) << how_it_ended(s) << "\n" << s.output();
  stop(s);
  for (auto& v : victims) EXPECT_EQ(v.changes(), "") << s.output();
}

TEST_F(HostileDirTest, StaleNamesThatAreSymlinksDoNotReachTheirTargets) {
  MPOD_SKIP_UNLESS(not_root());
  start_past_stale_names(Plant::symlink);
}

TEST_F(HostileDirTest, StaleNamesThatAreHardLinksLeaveTheOtherNameAlone) {
  MPOD_SKIP_UNLESS(not_root());
  start_past_stale_names(Plant::hard_link);
}

void HostileDirTest::start_past_fifo(const std::string& name) {
  precreate_domain({"pages"});
  plant(Plant::fifo, "", at(name));
  Start s = launch_primary();
  expect_finished(s);
  stop(s);
}

TEST_F(HostileDirTest, FifoAtThePageTableDoesNotHangThePrimary) {
  MPOD_SKIP_UNLESS(not_root());
  start_past_fifo("fbarray_memseg-4k-0-0");
}

TEST_F(HostileDirTest, FifoAtThePageFileDoesNotHangThePrimary) {
  MPOD_SKIP_UNLESS(not_root());
  start_past_fifo("pages/map_0");
}

// ---- 5. the hugepage file ----

// Hugepage files live in a hugetlbfs mount that every domain (and, on a
// shared host, every pod) writes: a name planted there must not lead the
// primary to another file. hugetlbfs refuses symbolic links (EINVAL), so the
// attack there is a hard link to another hugetlbfs file.
TEST_F(HostileDirTest, HugepageFileThatIsAHardLinkDoesNotTruncateTheOtherName) {
  MPOD_SKIP_UNLESS(not_root());
  MPOD_SKIP_UNLESS(cannot_use_hugepages(33));
  const auto huge_dir = huge_dir_2mb();
  ASSERT_TRUE(huge_dir);
  const std::string victim = *huge_dir + "/" + prefix_ + "victim";
  RemoveAtExit remove_victim{victim};
  Victim v = Victim::on_hugetlbfs(victim, 2ull << 20);
  const std::string page_file = *huge_dir + "/" + prefix_ + "map_0";
  RemoveAtExit unplant{page_file};
  plant(Plant::hard_link, victim, page_file);
  Start s = launch_primary({"--huge-dir=" + *huge_dir});
  expect_finished(s);
  stop(s);
  EXPECT_EQ(v.changes(), "") << s.output();
}

// ---- 6. FIFOs in the process registry ----

TEST_F(HostileDirTest, FifoInTheRegistryDoesNotHangAStartingPrimary) {
  MPOD_SKIP_UNLESS(not_root());
  precreate_domain({"procs"});
  plant(Plant::fifo, "", at("procs/" + random_id_hex()));
  Start s = launch_primary();
  EXPECT_TRUE(s.ready) << how_it_ended(s) << "\n" << s.output();
  stop(s);
}

TEST_F(HostileDirTest, FifoInTheRegistryDoesNotHangSecondariesOrInfo) {
  MPOD_SKIP_UNLESS(not_root());
  Start primary = launch_primary();
  ASSERT_TRUE(primary.ready) << primary.output();
  plant(Plant::fifo, "", at("procs/" + random_id_hex()));
  auto secondary = attach_within_limit();
  EXPECT_EQ(secondary.code, 0) << "(-1: did not finish within " << kLimit.count() << " s)\n" << secondary.output;
  EXPECT_TRUE(contains(secondary.output, "ATTACHED")) << secondary.output;
  auto info = run(mpod("info"), {}, kLimit);
  EXPECT_NE(info.code, -1) << "mpod info did not finish within " << kLimit.count() << " s\n" << info.output;
  EXPECT_LT(info.code, 128) << info.output;
  stop(primary);
}

// ---- 7. stale local fbarrays of dead processes ----

TEST_F(HostileDirTest, CleanupOfStaleLocalFbarraysGoesOnPastADirectory) {
  MPOD_SKIP_UNLESS(not_root());
  precreate_domain();
  std::vector<std::string> stale;
  for (int i = 0; i < 8; ++i) {
    make_dir(at("fbarray_memseg-4k-0-0_" + random_id_hex()), 0700);
    stale.push_back(at("fbarray_memseg-4k-0-0_" + random_id_hex()));
    write_file(stale.back(), "stale local fbarray of a dead process\n", 0600);
  }
  Start s = launch_primary();
  EXPECT_TRUE(s.ready) << how_it_ended(s) << "\n" << s.output();
  std::string left;
  for (auto& f : stale)
    if (exists(f)) left += "\n  " + f;
  EXPECT_TRUE(left.empty()) << "stale files left behind:" << left << "\n" << s.output();
  stop(s);
}

// ---- 8. who owns the directories ----

TEST_F(HostileDirTest, DomainDirMadeByAnotherUserIsRefused) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Victim v(victim_path("victim"));
  for (auto& argv : std::vector<std::vector<std::string>>{{"mkdir", domain_dir()},
                                                         {"mkdir", at("pages")},
                                                         {"ln", "-s", v.path(), at("pages/map_0")}}) {
    auto r = run_as_stranger(argv);
    ASSERT_EQ(r.code, 0) << "uid 65534 could not prepare the domain\n" << r.output;
  }
  Start s = launch_primary();
  stop(s);
  expect_refused(s, domain_dir());
  EXPECT_EQ(v.changes(), "") << s.output();
}

TEST_F(HostileDirTest, WorldWritableRuntimeDirWithoutStickyBitIsRefused) {
  MPOD_SKIP_UNLESS(not_root());
  ::chmod(rt().c_str(), 0777);
  Start s = launch_primary();
  stop(s);
  expect_refused(s, rt());
}

TEST_F(HostileDirTest, StickyWorldWritableRuntimeDirIsAccepted) {
  MPOD_SKIP_UNLESS(not_root());
  Start s = launch_primary();
  EXPECT_TRUE(s.ready) << how_it_ended(s) << "\n" << s.output();
  EXPECT_EQ(stop(s), 0) << s.output();
}

TEST_F(HostileDirTest, GroupWritableDomainDirWithoutGroupOptionIsRefused) {
  MPOD_SKIP_UNLESS(not_root());
  precreate_domain({}, 0770);
  Start s = launch_primary();
  stop(s);
  expect_refused(s, domain_dir());
}

// A user who may not enter the domain is told whose it is and how it is
// shared, not "cannot open directory" (or, formerly, "cannot create
// directory .../procs").
TEST_F(HostileDirTest, StrangerIsToldWhoseDomainItIsAndHowItIsShared) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  for (const bool grouped : {false, true}) {
    Start primary = grouped ? launch_primary({"--no-huge", kGroupOption}) : launch_primary();
    ASSERT_TRUE(primary.ready) << primary.output();
    auto argv = proc("attach", {"--no-huge"});
    argv.insert(argv.begin() + 2, "--proc-type=secondary");
    auto r = run_as_stranger(argv);
    EXPECT_TRUE(r.code > 0 && r.code < 128) << r.output;
    EXPECT_TRUE(contains(r.output, "the domain " + domain_dir() + " belongs to uid 0")) << r.output;
    EXPECT_TRUE(contains(r.output, "runs as uid " + std::string(kMember))) << r.output;
    if (grouped) {
      EXPECT_TRUE(contains(r.output, "shares it with group " + std::string(kGroup))) << r.output;
      EXPECT_TRUE(contains(r.output, kGroupOption)) << r.output;
    } else {
      EXPECT_TRUE(contains(r.output, "--group=GROUP")) << r.output;
    }
    EXPECT_EQ(stop(primary), 0) << primary.output();
    std::filesystem::remove_all(domain_dir());  // the next primary makes it afresh, shared or not
  }
}

// ---- 9. another process's socket ----

TEST_F(HostileDirTest, GroupMemberCannotRemoveOrReplaceTheSocketOfAnotherUid) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Start primary = launch_primary({"--no-huge", kGroupOption});
  ASSERT_TRUE(primary.ready) << primary.output();
  const std::string id = id_after(primary.output(), "READY id=");
  for (const std::string& dir : {domain_dir(), at("procs"), at("mp")}) {
    auto st = lstat_of(dir);
    ASSERT_TRUE(st) << dir;
    EXPECT_TRUE(st->st_mode & S_ISVTX) << dir << " should be sticky: mode 0" << std::oct << (st->st_mode & 07777);
    EXPECT_TRUE(st->st_mode & S_ISGID) << dir << " should be set-group-id: mode 0" << std::oct << (st->st_mode & 07777);
    EXPECT_EQ(st->st_gid, gid_t(4242)) << dir;
  }
  const std::string sock = socket_of(id);
  const auto before = lstat_of(sock);
  ASSERT_TRUE(before && S_ISSOCK(before->st_mode)) << sock;
  const std::string own = rt() + "/member-own-file";
  ASSERT_EQ(run_as_member({"touch", own}).code, 0);
  for (auto& argv : std::vector<std::vector<std::string>>{{"rm", "-f", sock}, {"mv", "-f", own, sock}, {"ln", "-sf", "/tmp", sock}}) {
    auto r = run_as_member(argv);
    EXPECT_NE(r.code, 0) << "uid 65534 succeeded: " << argv[0] << " " << argv[1] << " ...\n" << r.output;
  }
  const auto after = lstat_of(sock);
  EXPECT_TRUE(after && S_ISSOCK(after->st_mode) && after->st_ino == before->st_ino) << sock << " was replaced";
  expect_member_answered(id, "after-the-attempts");
}

// ---- 10. marker bodies whose markers never come ----

HostileDirTest::Flood HostileDirTest::flood_marker_bodies(int count, int nfds) {
  Start primary = launch_primary({"--no-huge", kGroupOption});
  if (!primary.ready) throw std::runtime_error("the primary did not start:\n" + primary.output());
  const std::string id = id_after(primary.output(), "READY id=");
  const pid_t pid = primary.child.pid();
  expect_member_answered(id, "before");  // whatever a member's first request opens is open before counting
  Flood f;
  f.fds_before = fd_count(pid);
  f.devnull_before = fd_count(pid, "/dev/null");
  auto r = run_as_member({bin("mpod-test-proc"), "body-flood", socket_of(id), std::to_string(count), std::to_string(nfds)});
  EXPECT_TRUE(contains(r.output, "FLOODED sent=" + std::to_string(count))) << r.output;
  // Answered after the flood: the primary has read everything the flood queued before this request.
  expect_member_answered(id, "after");
  f.fds_after = fd_count(pid);
  f.devnull_after = fd_count(pid, "/dev/null");
  stop(primary);
  f.primary_output = primary.output();
  return f;
}

TEST_F(HostileDirTest, FloodOfUnmatchedMarkerBodiesDoesNotPileUpDescriptors) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Flood f = flood_marker_bodies(2000, 8);
  EXPECT_LT(f.fds_after, f.fds_before + 300) << "the primary held " << f.fds_before << " descriptors before the flood and "
                                             << f.fds_after << " after it (" << f.devnull_after - f.devnull_before
                                             << " more of /dev/null)\n" << f.primary_output;
}

TEST_F(HostileDirTest, MarkerBodyWithTooManyDescriptorsIsDroppedWhole) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Flood f = flood_marker_bodies(20, 9);
  // Counted by what the flood sent (/dev/null): other descriptors may come and go with the member's requests.
  EXPECT_EQ(f.devnull_after, f.devnull_before) << "descriptors of /dev/null in the primary; all of them: "
                                               << f.fds_before << " before, " << f.fds_after << " after\n"
                                               << f.primary_output;
}

// ---- 11. a message claiming another process's id ----

TEST_F(HostileDirTest, MessageUnderAnotherProcesssIdIsDroppedAndOwnIdIsAnswered) {
  MPOD_SKIP_UNLESS(cannot_switch_uid());
  Start primary = launch_primary({"--no-huge", kGroupOption});
  ASSERT_TRUE(primary.ready) << primary.output();
  const std::string id = id_after(primary.output(), "READY id=");
  Child responder = Child::spawn(proc("responder", {"--no-huge", kGroupOption}));
  ASSERT_TRUE(responder.wait_for_output("RESPONDER id=", kLimit)) << responder.output();
  const std::string responder_id = id_after(responder.output(), "RESPONDER id=");
  // The member claims to be the (root) responder.
  auto forged = run_as_member({bin("mpod-test-proc"), "raw-send-as", socket_of(id), responder_id, "note", "forged-by-member"});
  ASSERT_TRUE(contains(forged.output, "SENT")) << forged.output;
  EXPECT_TRUE(primary.child.wait_for_output("uid 65534", kLimit)) << "no drop line naming uid 65534\n" << primary.output();
  EXPECT_FALSE(contains(primary.output(), "NOTE from=" + responder_id))
      << "the primary took the member's message as the responder's\n" << primary.output();
  // Under its own id the member is heard and answered.
  auto own = run_as_member(proc("requester", {"--no-huge", kGroupOption}, {"--to=" + id, "--action=note", "--data=own-id"}));
  EXPECT_TRUE(contains(own.output, "data=noted")) << own.output;
  EXPECT_TRUE(primary.child.wait_for_output("data=own-id", kLimit)) << primary.output();
  responder.signal(SIGTERM);
  responder.wait(kLimit);
  stop(primary);
}

// ---- 12. page-table entries that point anywhere ----

TEST_F(HostileDirTest, SecondaryRefusesMemsegsOutsideTheSharedRange) {
  MPOD_SKIP_UNLESS(not_root());
  Start primary = launch_primary();
  ASSERT_TRUE(primary.ready) << primary.output();
  const std::string table = at("fbarray_memseg-4k-0-0");
  const int fd = ::open(table.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << table << ": " << std::strerror(errno);
  // Header: ..., elt_size (u32) at 20, data_offset (u64) at 24; elements from 128.
  uint32_t elt_size = 0;
  uint64_t data_offset = 0;
  ASSERT_EQ(::pread(fd, &elt_size, sizeof elt_size, 20), ssize_t(sizeof elt_size));
  ASSERT_EQ(::pread(fd, &data_offset, sizeof data_offset, 24), ssize_t(sizeof data_offset));
  ASSERT_EQ(elt_size, sizeof(Memseg));
  ASSERT_EQ(data_offset, 128u);
  Memseg original{};
  ASSERT_EQ(::pread(fd, &original, sizeof original, 128), ssize_t(sizeof original));
  ASSERT_NE(original.addr, 0u) << "element 0 is not in use";
  const std::vector<std::pair<std::string, std::function<void(Memseg&)>>> cases = {
      {"addr 0x1000", [](Memseg& m) { m.addr = 0x1000; }},
      {"addr unaligned", [](Memseg& m) { m.addr += 1; }},
      {"file_offset 1<<40", [](Memseg& m) { m.file_offset = 1ull << 40; }},
  };
  for (auto& [what, edit] : cases) {
    Memseg bad = original;
    edit(bad);
    ASSERT_EQ(::pwrite(fd, &bad, sizeof bad, 128), ssize_t(sizeof bad));
    auto r = attach_within_limit();
    ASSERT_EQ(::pwrite(fd, &original, sizeof original, 128), ssize_t(sizeof original));
    EXPECT_TRUE(r.code > 0 && r.code < 128) << what << ": the secondary should refuse (exit code " << r.code << ")\n" << r.output;
    EXPECT_TRUE(contains(r.output, "fbarray_memseg-4k-0-0")) << what << ": the error should name the page table\n" << r.output;
  }
  ::close(fd);
  stop(primary);
}

}  // namespace
}  // namespace mpod::test
