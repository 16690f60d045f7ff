// The process registry: ids by exclusive creation, liveness by lock, reaping.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "src/os/os.hpp"
#include "src/runtime/registry.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod {
namespace {

using test::TempDir;

// A child that registers, reports its id through a pipe, and waits to be killed.
struct RegisteredChild {
  pid_t pid;
  ProcessId id;
};

RegisteredChild spawn_registered(const std::string& domain, Role role) {
  int p[2];
  EXPECT_EQ(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    auto r = registry::Registration::create(domain, role);
    (void)!write(p[1], r.info().id.bytes.data(), 16);
    pause();
    _exit(0);
  }
  RegisteredChild c{pid, {}};
  EXPECT_EQ(read(p[0], c.id.bytes.data(), 16), 16);
  close(p[0]);
  close(p[1]);
  return c;
}

TEST(ProcessId, RandomHexRoundTripAndParsing) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    auto id = ProcessId::random();
    EXPECT_FALSE(id.empty());
    EXPECT_TRUE(seen.insert(id.hex()).second);
    EXPECT_EQ(ProcessId::parse(id.hex()), id);
    EXPECT_EQ(id.short_hex(), id.hex().substr(0, 8));
  }
  EXPECT_FALSE(ProcessId::parse("xyz"));
  EXPECT_FALSE(ProcessId::parse(std::string(31, 'a')));
  EXPECT_FALSE(ProcessId::parse(std::string(32, 'g')));
  EXPECT_FALSE(ProcessId::parse(std::string(32, 'A')));  // ids are written lowercase
}

TEST(Registry, RegistrationIsListedAliveAndRemovedOnUnregister) {
  TempDir dir;
  std::filesystem::create_directory(registry::procs_dir(dir.path()));
  auto r = registry::Registration::create(dir.path(), Role::primary);
  const auto& me = r.info();
  auto all = registry::list(dir.path());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id, me.id);
  EXPECT_TRUE(all[0].alive);
  EXPECT_EQ(all[0].role, Role::primary);
  EXPECT_EQ(all[0].pid, getpid());
  EXPECT_EQ(all[0].pid_ns, os::pid_namespace_inode());
  EXPECT_EQ(all[0].hostname, os::host_name());
  EXPECT_GT(all[0].started_ns, 0u);
  std::string d = registry::describe(all[0]);
  EXPECT_NE(d.find(me.id.short_hex()), std::string::npos) << d;
  EXPECT_NE(d.find("pid " + std::to_string(getpid())), std::string::npos) << d;
  r.unregister();
  EXPECT_TRUE(registry::list(dir.path()).empty());
  EXPECT_TRUE(std::filesystem::is_empty(registry::procs_dir(dir.path())));
}

TEST(Registry, KilledProcessIsDeadAndReapedExactlyOnce) {
  TempDir dir;
  std::filesystem::create_directory(registry::procs_dir(dir.path()));
  auto live = spawn_registered(dir.path(), Role::secondary);
  auto victim = spawn_registered(dir.path(), Role::secondary);
  EXPECT_TRUE(registry::is_alive(dir.path(), victim.id));
  kill(victim.pid, SIGKILL);
  waitpid(victim.pid, nullptr, 0);
  EXPECT_FALSE(registry::is_alive(dir.path(), victim.id));
  auto found = registry::find(dir.path(), victim.id);
  ASSERT_TRUE(found);
  EXPECT_FALSE(found->alive);

  // Several reapers at once: each dead registration is removed by exactly one.
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  std::vector<pid_t> reapers;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      char n = static_cast<char>(registry::reap(dir.path()).size());
      (void)!write(p[1], &n, 1);
      _exit(0);
    }
    reapers.push_back(pid);
  }
  int total = 0;
  for (size_t i = 0; i < reapers.size(); ++i) {
    char n;
    ASSERT_EQ(read(p[0], &n, 1), 1);
    total += n;
    waitpid(reapers[i], nullptr, 0);
  }
  EXPECT_EQ(total, 1);
  EXPECT_FALSE(registry::find(dir.path(), victim.id));
  EXPECT_TRUE(registry::is_alive(dir.path(), live.id)) << "a live registration was reaped";
  int calls = 0;
  EXPECT_TRUE(registry::reap(dir.path(), [&](const ProcessInfo&) { ++calls; }).empty());
  EXPECT_EQ(calls, 0);
  kill(live.pid, SIGKILL);
  waitpid(live.pid, nullptr, 0);
  ProcessId reaped_id;
  EXPECT_EQ(registry::reap(dir.path(), [&](const ProcessInfo& pi) { reaped_id = pi.id; }).size(), 1u);
  EXPECT_EQ(reaped_id, live.id);
}

// Descriptors this process has open (the listing's own included, the same each time).
size_t open_fds() {
  const auto it = std::filesystem::directory_iterator("/proc/self/fd");
  return size_t(std::distance(std::filesystem::begin(it), std::filesystem::end(it)));
}

// The monitor's scanner keeps registrations open between scans (up to a
// limit, past which it opens them on each scan): either way it must see
// arrivals, deaths (lock released, file still there), clean exits and
// removals exactly as list() does, skip what is not a registration without
// failing the scan, and close what it no longer needs.
void scanner_agrees_with_list(size_t max_kept_open) {
  TempDir dir;
  const std::string procs = registry::procs_dir(dir.path());
  std::filesystem::create_directory(procs);
  registry::Scanner scanner(dir.path(), max_kept_open);
  EXPECT_TRUE(scanner.scan().empty());   // opens the scanner's own directory descriptor
  const size_t fds_before = open_fds();  // which is included from here on
  using Seen = std::set<std::pair<std::string, bool>>;
  auto as_set = [](const std::vector<ProcessInfo>& v) {
    Seen out;
    for (auto& p : v) out.insert({p.id.hex(), p.alive});
    return out;
  };
  auto same_as_list = [&](size_t expected) {
    const auto scanned = scanner.scan();
    EXPECT_EQ(scanned.size(), expected);
    EXPECT_EQ(as_set(scanned), as_set(registry::list(dir.path())));
    return as_set(scanned);
  };
  same_as_list(0);
  auto a = spawn_registered(dir.path(), Role::secondary);
  auto b = spawn_registered(dir.path(), Role::primary);
  EXPECT_EQ(same_as_list(2), (Seen{{a.id.hex(), true}, {b.id.hex(), true}}));
  EXPECT_LE(open_fds(), fds_before + std::min<size_t>(2, max_kept_open));
  // A file with a registration's name but not a registration's contents.
  const std::string junk = ProcessId::random().hex();
  { std::ofstream(procs + "/" + junk) << "not a registration\n"; }
  same_as_list(2);
  same_as_list(2);
  // A directory with a registration's name: list() cannot read it, the scanner skips it.
  const std::string odd = procs + "/" + ProcessId::random().hex();
  std::filesystem::create_directory(odd);
  EXPECT_EQ(as_set(scanner.scan()), (Seen{{a.id.hex(), true}, {b.id.hex(), true}}));
  std::filesystem::remove(odd);
  // This process registers, then unregisters cleanly: gone, never dead.
  {
    auto me = registry::Registration::create(dir.path(), Role::secondary);
    EXPECT_TRUE(same_as_list(3).count({me.info().id.hex(), true}));
    me.unregister();
  }
  same_as_list(2);
  kill(a.pid, SIGKILL);
  waitpid(a.pid, nullptr, 0);
  EXPECT_EQ(same_as_list(2), (Seen{{a.id.hex(), false}, {b.id.hex(), true}}));
  EXPECT_EQ(registry::reap(dir.path()).size(), 2u);  // the dead one and the junk file (unlocked too)
  EXPECT_EQ(same_as_list(1), (Seen{{b.id.hex(), true}}));
  auto c = spawn_registered(dir.path(), Role::secondary);
  same_as_list(2);
  for (auto* k : {&b, &c}) {
    kill(k->pid, SIGKILL);
    waitpid(k->pid, nullptr, 0);
  }
  EXPECT_EQ(same_as_list(2), (Seen{{b.id.hex(), false}, {c.id.hex(), false}}));
  EXPECT_EQ(registry::reap(dir.path()).size(), 2u);
  same_as_list(0);
  EXPECT_EQ(open_fds(), fds_before) << "the scanner closes the registrations that are gone";
}

TEST(Registry, ScannerKeepingFilesOpenAgreesWithList) { scanner_agrees_with_list(registry::Scanner::kMaxKeptOpen); }

TEST(Registry, ScannerPastItsOpenFileLimitAgreesWithList) { scanner_agrees_with_list(1); }

TEST(Registry, IdsAreUniqueAcrossManyConcurrentRegistrations) {
  TempDir dir;
  std::filesystem::create_directory(registry::procs_dir(dir.path()));
  std::vector<RegisteredChild> kids;
  for (int i = 0; i < 24; ++i) kids.push_back(spawn_registered(dir.path(), Role::secondary));
  auto all = registry::list(dir.path());
  EXPECT_EQ(all.size(), kids.size());
  std::set<std::string> ids;
  for (auto& p : all) {
    EXPECT_TRUE(p.alive);
    ids.insert(p.id.hex());
  }
  EXPECT_EQ(ids.size(), kids.size());
  for (auto& k : kids) {
    kill(k.pid, SIGKILL);
    waitpid(k.pid, nullptr, 0);
  }
  EXPECT_EQ(registry::reap(dir.path()).size(), kids.size());
}

}  // namespace
}  // namespace mpod
