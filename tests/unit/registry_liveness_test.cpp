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

// The watcher reaps one process the moment it hears of its death: only a
// dead one, exactly once, and says so while the process still holds its lock.
TEST(Registry, ReapOneTakesOnlyTheDeadAndOnlyOnce) {
  TempDir dir;
  std::filesystem::create_directory(registry::procs_dir(dir.path()));
  auto live = spawn_registered(dir.path(), Role::primary);
  auto victim = spawn_registered(dir.path(), Role::secondary);
  EXPECT_EQ(registry::reap_one(dir.path(), live.id), registry::ReapOne::alive);
  EXPECT_EQ(registry::reap_one(dir.path(), victim.id), registry::ReapOne::alive);
  kill(victim.pid, SIGKILL);
  waitpid(victim.pid, nullptr, 0);
  EXPECT_EQ(registry::reap_one(dir.path(), victim.id), registry::ReapOne::reaped);
  EXPECT_EQ(registry::reap_one(dir.path(), victim.id), registry::ReapOne::absent);
  EXPECT_EQ(registry::reap_one(dir.path(), ProcessId::random()), registry::ReapOne::absent);
  EXPECT_TRUE(registry::is_alive(dir.path(), live.id));
  kill(live.pid, SIGKILL);
  waitpid(live.pid, nullptr, 0);
}

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
