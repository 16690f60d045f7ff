// Crashes and start-up order: processes killed with SIGKILL leave nothing that
// blocks anyone, their files are reaped, a crashed primary's memory is never
// wiped while its secondaries live, secondaries may start before their
// primary, and `auto` never makes two primaries.
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "domain_fixture.hpp"
#include "src/os/os.hpp"

namespace mpod::test {
namespace {

using Crash = DomainTest;
using namespace std::chrono;
namespace fs = std::filesystem;

std::string id_of(const Child& c) {
  auto out = c.output();
  auto at = out.find("id=");
  return at == std::string::npos ? "" : out.substr(at + 3, 32);
}

TEST_F(Crash, SecondaryKilledInItsPodIsReapedByTheServingPrimary) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child serve = Child::spawn(mpod("serve", {"--no-huge"}));
  ASSERT_TRUE(serve.wait_for_output("ready")) << serve.output();
  auto argv = proc("attach", {"--proc-type=secondary", "--no-huge"}, {"--hold"});
  Child pod = Child::spawn(argv, PodOptions{true, "victim"});
  ASSERT_TRUE(pod.wait_for_output("ATTACHED")) << pod.output();
  const std::string id = id_of(pod);
  ASSERT_EQ(id.size(), 32u);
  EXPECT_TRUE(fs::exists(domain_dir() + "/procs/" + id));
  EXPECT_TRUE(fs::exists(domain_dir() + "/fbarray_memseg-4k-0-0_" + id));
  EXPECT_TRUE(fs::exists(domain_dir() + "/mp/" + id + ".sock"));
  EXPECT_TRUE(fs::exists(domain_dir() + "/mp/" + id + ".mbox"));

  pod.signal(SIGKILL);  // unshare --kill-child takes the pod's PID 1 with it
  pod.wait();
  // The watcher (mpod serve) reaps the moment the pod's connection ends; the
  // registration goes first and the process's other files right after it.
  auto deadline = steady_clock::now() + seconds(3);
  auto any_left = [&] {
    for (const std::string& f : {"/procs/" + id, "/fbarray_memseg-4k-0-0_" + id, "/mp/" + id + ".sock", "/mp/" + id + ".mbox"})
      if (fs::exists(domain_dir() + f)) return true;
    return false;
  };
  while (any_left() && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_FALSE(fs::exists(domain_dir() + "/procs/" + id)) << "registration of the dead pod not reaped";
  EXPECT_FALSE(fs::exists(domain_dir() + "/fbarray_memseg-4k-0-0_" + id)) << "its local page table not removed";
  EXPECT_FALSE(fs::exists(domain_dir() + "/mp/" + id + ".sock")) << "its stale channel socket not removed";
  EXPECT_FALSE(fs::exists(domain_dir() + "/mp/" + id + ".mbox")) << "its stale mailbox not removed";
  EXPECT_TRUE(contains(serve.output(), "removed registration of dead secondary process " + id)) << serve.output();
  // And the domain is fine.
  EXPECT_EQ(attach_once().code, 0);
  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait(), 0);
}

TEST_F(Crash, DeadProcessLeavesTheListOfAnotherWatchingProcess) {
  // Two holders; kill one; `mpod info --watch`, attached before the kill,
  // lists it, then no more: the watcher reaped it the moment it died.
  Child primary = start_primary();
  Child victim = Child::spawn(proc("attach", {"--proc-type=secondary", "--no-huge"}, {"--hold"}));
  ASSERT_TRUE(victim.wait_for_output("ATTACHED"));
  const std::string id = id_of(victim);
  Child watch = Child::spawn(mpod("info", {"--json", "--watch=0.05"}));
  ASSERT_TRUE(watch.wait_for_output("\"id\":\"" + id + "\""));
  victim.signal(SIGKILL);
  victim.wait();
  auto deadline = steady_clock::now() + seconds(5);
  bool gone = false;
  while (!gone && steady_clock::now() < deadline) {
    // The last whole report (each ends in a newline) no longer names it.
    const std::string out = watch.output();
    const auto end = out.rfind('\n');
    const auto begin = end == std::string::npos ? std::string::npos : out.rfind('\n', end - 1);
    if (end != std::string::npos && begin != std::string::npos)
      gone = out.substr(begin, end - begin).find(id) == std::string::npos &&
             out.substr(begin, end - begin).find("\"processes\"") != std::string::npos;
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(gone) << watch.output().substr(0, 2000);
  EXPECT_FALSE(fs::exists(domain_dir() + "/procs/" + id));
  watch.signal(SIGINT);
  EXPECT_EQ(watch.wait(), 0);
}

TEST_F(Crash, KilledPrimaryMemoryOutlivesItForItsSecondariesThenIsCleaned) {
  MPOD_SKIP_UNLESS(cannot_use_hugepages(16));
  Child primary = start_primary({"-m", "16"});
  Child secondary = Child::spawn(proc("attach", {"--proc-type=secondary"}, {"--hold"}));
  ASSERT_TRUE(secondary.wait_for_output("ATTACHED"));
  primary.signal(SIGKILL);
  primary.wait();
  EXPECT_EQ(page_files(prefix_), 1u);

  // A new primary must not wipe memory a live secondary uses.
  auto second = run(proc("primary", {"-m", "16"}));
  EXPECT_EQ(second.code, 1);
  EXPECT_TRUE(contains(second.output, "ERROR busy")) << second.output;
  EXPECT_TRUE(contains(second.output, "secondary process " + id_of(secondary).substr(0, 8))) << second.output;
  EXPECT_TRUE(contains(second.output, "stop them")) << second.output;
  EXPECT_TRUE(secondary.running());
  EXPECT_EQ(page_files(prefix_), 1u);

  // The last process out removes the memory, including the dead primary's files.
  secondary.signal(SIGTERM);
  EXPECT_EQ(secondary.wait(), 0) << secondary.output();
  EXPECT_EQ(page_files(prefix_), 0u);
  EXPECT_EQ(files_in(domain_dir()), (std::vector<std::string>{"lock", "mp", "procs"}));
  EXPECT_TRUE(files_in(domain_dir() + "/procs").empty());
  // The watch lock stays, as the primary lock does: every process agrees on one inode.
  EXPECT_EQ(files_in(domain_dir() + "/mp"), (std::vector<std::string>{"watch.lock"})) << "a channel socket was left behind";
  Child again = start_primary({"-m", "16"});
  EXPECT_TRUE(again.running());
}

TEST_F(Crash, CleanShutdownLeavesOnlyTheLockFileAndEmptyDirs) {
  MPOD_SKIP_UNLESS(cannot_use_hugepages(16));
  Child primary = start_primary({"-m", "16"});
  ASSERT_EQ(attach_once({}).code, 0);
  EXPECT_EQ(page_files(prefix_), 1u);
  primary.signal(SIGTERM);
  EXPECT_EQ(primary.wait(), 0);
  EXPECT_EQ(page_files(prefix_), 0u);
  EXPECT_EQ(files_in(domain_dir()), (std::vector<std::string>{"lock", "mp", "procs"}));
  EXPECT_TRUE(files_in(domain_dir() + "/procs").empty());
  // The watch lock stays, as the primary lock does: every process agrees on one inode.
  EXPECT_EQ(files_in(domain_dir() + "/mp"), (std::vector<std::string>{"watch.lock"})) << "a channel socket was left behind";
}

// The same with plain files: their directory stays, empty.
TEST_F(Crash, CleanShutdownWithoutHugepagesLeavesOnlyTheSkeleton) {
  Child primary = start_primary({"--no-huge", "-m", "16"});
  ASSERT_EQ(attach_once({"--no-huge"}).code, 0);
  primary.signal(SIGTERM);
  EXPECT_EQ(primary.wait(), 0);
  EXPECT_EQ(files_in(domain_dir()), (std::vector<std::string>{"lock", "mp", "pages", "procs"}));
  EXPECT_TRUE(files_in(domain_dir() + "/procs").empty());
  EXPECT_TRUE(files_in(domain_dir() + "/pages").empty()) << "plain-file memory was left behind";
  EXPECT_EQ(files_in(domain_dir() + "/mp"), (std::vector<std::string>{"watch.lock"}));
}

// A primary and its last secondary leaving at the same moment: each used to
// find the other still there (the secondary still registered; the
// primary's lock still held) and both left the memory behind (once in about
// 45 runs of client_server_mp in containers). Leaving processes now decide
// one at a time under the exit lock (byte 1 of the lock file).
TEST_F(Crash, PrimaryAndSecondaryLeavingTogetherLeaveNoMemory) {
  // 1. The exit lock is taken: with it held elsewhere (here, by the test), a
  //    leaving secondary waits, its decision not yet made.
  {
    Child primary = start_primary({"--no-huge", "-m", "16"});
    Child secondary = Child::spawn(proc("responder", {"--no-huge", "--proc-type=secondary"}));
    ASSERT_TRUE(secondary.wait_for_output("RESPONDER")) << secondary.output();
    const std::string lock_path = domain_dir() + "/lock";
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << lock_path;
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 1;
    fl.l_len = 1;
    ASSERT_EQ(::fcntl(fd, F_OFD_SETLK, &fl), 0) << "the exit lock (byte 1) should be free while nobody leaves";
    secondary.signal(SIGTERM);
    // It unregisters first, then waits for the exit lock.
    for (int i = 0; i < 1000 && files_in(domain_dir() + "/procs").size() > 1; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_TRUE(secondary.running()) << "the leaving secondary did not wait for the exit lock:\n" << secondary.output();
    ::close(fd);  // drops the exit lock
    EXPECT_EQ(secondary.wait(std::chrono::seconds(20)), 0) << secondary.output();
    EXPECT_TRUE(std::filesystem::exists(domain_dir() + "/config")) << "the primary is alive: the memory stays";
    primary.signal(SIGTERM);
    EXPECT_EQ(primary.wait(std::chrono::seconds(20)), 0) << primary.output();
    EXPECT_FALSE(std::filesystem::exists(domain_dir() + "/config"));
  }
  // 2. Both told to leave in the same instant, again and again: the memory
  //    never stays behind.
  for (int i = 0; i < 20; ++i) {
    Child primary = start_primary({"--no-huge", "-m", "16"});
    Child secondary = Child::spawn(proc("responder", {"--no-huge", "--proc-type=secondary"}));
    ASSERT_TRUE(secondary.wait_for_output("RESPONDER")) << secondary.output();
    ::kill(primary.pid(), SIGTERM);
    ::kill(secondary.pid(), SIGTERM);
    EXPECT_EQ(primary.wait(std::chrono::seconds(20)), 0) << primary.output();
    EXPECT_EQ(secondary.wait(std::chrono::seconds(20)), 0) << secondary.output();
    ASSERT_FALSE(std::filesystem::exists(domain_dir() + "/config"))
        << "run " << i << ": both left, the memory stayed\nprimary:\n" << primary.output() << "\nsecondary:\n"
        << secondary.output();
    ASSERT_TRUE(files_in(domain_dir() + "/pages").empty()) << "run " << i;
  }
}

TEST_F(Crash, PageFilesAreFlockedWhileMappedSoDpdkLeavesThemAlone) {
  // A DPDK primary starting on the same hugetlbfs deletes every "*map_*" file
  // it can flock exclusively. mpod's must refuse that while in use.
  MPOD_SKIP_UNLESS(cannot_use_hugepages(16));
  Child primary = start_primary({"-m", "16"});
  std::string path;
  for (auto& m : os::hugetlbfs_mounts())
    if (fs::exists(m.path + "/" + prefix_ + "map_0")) path = m.path + "/" + prefix_ + "map_0";
  ASSERT_FALSE(path.empty());
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_NE(::flock(fd, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(errno, EWOULDBLOCK);
  ::close(fd);
}

TEST_F(Crash, SecondaryStartedBeforeItsPrimaryWaits) {
  PodOptions pod;
  if (!cannot_make_pods()) pod = PodOptions{true, "early"};
  auto argv = proc("attach", {"--proc-type=secondary", "--no-huge", "--wait-primary=20"});
  Child early = Child::spawn(argv, pod);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(early.running()) << early.output();
  Child primary = start_primary();
  EXPECT_EQ(early.wait(seconds(20)), 0) << early.output();
  EXPECT_TRUE(contains(early.output(), "ATTACHED role=secondary")) << early.output();
  EXPECT_TRUE(contains(early.output(), "waiting for the primary")) << early.output();
}

TEST_F(Crash, AutoNeverMakesTwoPrimaries) {
  std::vector<Child> procs;
  for (int i = 0; i < 6; ++i) procs.push_back(Child::spawn(proc("attach", {"--proc-type=auto", "--no-huge"}, {"--hold"})));
  int primaries = 0, secondaries = 0;
  for (auto& c : procs) {
    ASSERT_TRUE(c.wait_for_output("ATTACHED", seconds(20))) << c.output();
    primaries += contains(c.output(), "role=primary");
    secondaries += contains(c.output(), "role=secondary");
  }
  EXPECT_EQ(primaries, 1);
  EXPECT_EQ(secondaries, 5);
}

TEST_F(Crash, InfoJsonHasTheDocumentedShape) {
  Child primary = start_primary();
  auto r = run(mpod("info", {"--json"}));
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* key : {"\"processes\":[", "\"memory\":[", "\"memzones\":[", "\"id\":", "\"role\":\"primary\"",
                          "\"pid\":", "\"pid_ns\":", "\"hostname\":", "\"alive\":true", "\"started\":\"",
                          "\"page_size\":4096", "\"total_bytes\":67108864", "\"used_bytes\":", "\"name\":\"greeting\"",
                          "\"size\":4096"})
    EXPECT_TRUE(contains(r.output, key)) << key << " missing in " << r.output;
}

}  // namespace
}  // namespace mpod::test
