// Bad input: every case fails with a non-zero exit and a message naming what
// failed and what to do, and leaves the domain that was there working.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "domain_fixture.hpp"
#include "mpod/runtime.hpp"
#include "src/os/os.hpp"

namespace mpod::test {
namespace {

using Errors = DomainTest;
using namespace std::chrono;

TEST_F(Errors, UnknownAndMalformedOptionsNameTheOption) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--bogus"}, "--bogus"},
      {{"-m", "abc"}, "-m"},
      {{"-m0"}, "-m"},
      {{"--proc-type=foo"}, "--proc-type"},
      {{"--base-virtaddr=123"}, "--base-virtaddr"},
      {{"--wait-primary=-1"}, "--wait-primary"},
      {{"--log-level=nosuch:debug"}, "--log-level"},
      {{"--file-prefix=a/b"}, "--file-prefix"},
      {{"--runtime-dir"}, "--runtime-dir"},
  };
  for (auto& [args, option] : cases) {
    auto r = run(mpod("info", args));
    EXPECT_EQ(r.code, 1) << option << ": " << r.output;
    EXPECT_TRUE(contains(r.output, option)) << r.output;
    EXPECT_TRUE(contains(r.output, "error:")) << r.output;
  }
}

TEST_F(Errors, MissingRuntimeDir) {
  auto r = run({bin("mpod"), "serve", "--runtime-dir=" + dir_.path() + "/nope", "--no-huge"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, dir_.path() + "/nope")) << r.output;
  EXPECT_TRUE(contains(r.output, "--runtime-dir")) << r.output;
  EXPECT_TRUE(contains(r.output, "does not exist")) << r.output;
}

TEST_F(Errors, ReadOnlyRuntimeDir) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a read-only tmpfs";
  std::string ro = dir_.path() + "/ro";
  std::filesystem::create_directory(ro);
  if (mount("tmpfs", ro.c_str(), "tmpfs", MS_RDONLY, "size=1m") != 0)
    GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  auto r = run({bin("mpod"), "serve", "--runtime-dir=" + ro, "--no-huge"});
  umount(ro.c_str());
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, ro)) << r.output;
  EXPECT_TRUE(contains(r.output, "not writable")) << r.output;
}

TEST_F(Errors, RuntimeDirWithoutLocksIsRefused) {
  // No local filesystem lacks OFD locks, so the os layer is told to fail as
  // NFS without lockd does (ENOLCK). Run in a child: one Runtime per process.
  pid_t pid = fork();
  if (pid == 0) {
    os::inject_fault(os::Op::lock, ENOLCK, 1000);
    Options o;
    o.runtime_dir = dir_.path();
    o.file_prefix = prefix_;
    o.no_huge = true;
    try {
      Runtime::start(o);
      _exit(10);
    } catch (const Error& e) {
      bool ok = e.code() == Errc::unsupported && contains(e.what(), "does not support file locks") &&
                contains(e.what(), dir_.path());
      if (!ok) std::fprintf(stderr, "unexpected error: %s\n", e.what());
      _exit(ok ? 0 : 11);
    }
  }
  int st;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
}

TEST_F(Errors, NoPrimaryFailsAtOnceAndSaysHowToWait) {
  auto t0 = steady_clock::now();
  auto r = attach_once();
  auto elapsed = steady_clock::now() - t0;
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "ERROR not_found")) << r.output;
  EXPECT_TRUE(contains(r.output, "no primary is running for prefix '" + prefix_ + "'")) << r.output;
  EXPECT_TRUE(contains(r.output, "--wait-primary")) << r.output;
  EXPECT_LT(elapsed, seconds(2));
}

TEST_F(Errors, WaitPrimaryGivesUpAfterItsTime) {
  auto t0 = steady_clock::now();
  auto r = attach_once({"--no-huge", "--wait-primary=0.3"});
  auto elapsed = steady_clock::now() - t0;
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "waited 0.3")) << r.output;
  EXPECT_GE(elapsed, milliseconds(300));
  EXPECT_LT(elapsed, seconds(5));
}

TEST_F(Errors, SecondPrimaryIsRefusedAndFirstKeepsServing) {
  Child primary = start_primary();
  std::string out = primary.output();
  std::string id = out.substr(out.find("id=") + 3, 8);
  auto second = run(proc("primary", {"--no-huge"}));
  EXPECT_EQ(second.code, 1) << second.output;
  EXPECT_TRUE(contains(second.output, "ERROR already_exists")) << second.output;
  EXPECT_TRUE(contains(second.output, "primary process " + id)) << second.output;
  EXPECT_TRUE(contains(second.output, "--proc-type=secondary")) << second.output;
  auto r = attach_once();
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "ATTACHED role=secondary")) << r.output;
}

// Overwrites `len` bytes at `offset` of `path`, returning what was there.
std::string patch(const std::string& path, off_t offset, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_RDWR);
  std::string old(bytes.size(), '\0');
  EXPECT_EQ(::pread(fd, old.data(), old.size(), offset), static_cast<ssize_t>(old.size()));
  EXPECT_EQ(::pwrite(fd, bytes.data(), bytes.size(), offset), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
  return old;
}

TEST_F(Errors, ConfigVersionMismatchMagicAndTruncation) {
  Child primary = start_primary();
  const std::string config = domain_dir() + "/config";

  std::string old = patch(config, 8, std::string("\x63\x00\x00\x00", 4));  // version 99
  auto r = attach_once();
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "ERROR version_mismatch")) << r.output;
  EXPECT_TRUE(contains(r.output, config)) << r.output;
  EXPECT_TRUE(contains(r.output, "same mpod version")) << r.output;
  patch(config, 8, old);

  old = patch(config, 0, "garbage!");
  r = attach_once();
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "ERROR corrupt")) << r.output;
  EXPECT_TRUE(contains(r.output, config)) << r.output;
  patch(config, 0, old);

  // Truncated: keep the header, drop the rest; then put the file back whole.
  std::ifstream in(config, std::ios::binary);
  std::string whole((std::istreambuf_iterator<char>(in)), {});
  ASSERT_EQ(truncate(config.c_str(), 4096), 0);
  r = attach_once();
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "ERROR corrupt")) << r.output;
  EXPECT_TRUE(contains(r.output, "expected")) << r.output;
  // Shorter than its header: refused at once, not waited on as if the primary were starting.
  ASSERT_EQ(truncate(config.c_str(), 10), 0);
  auto t0 = steady_clock::now();
  r = attach_once();
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "ERROR corrupt")) << r.output;
  EXPECT_TRUE(contains(r.output, "truncated")) << r.output;
  EXPECT_LT(steady_clock::now() - t0, seconds(2));
  ASSERT_EQ(truncate(config.c_str(), static_cast<off_t>(whole.size())), 0);
  patch(config, 0, whole);

  r = attach_once();
  EXPECT_EQ(r.code, 0) << "the domain must work again once the file is restored: " << r.output;
  EXPECT_TRUE(primary.running());
}

TEST_F(Errors, CorruptFbarrayIsNamed) {
  Child primary = start_primary();
  std::string fbarray;
  for (auto& e : std::filesystem::directory_iterator(domain_dir()))
    if (e.path().filename().string().ends_with("-0-0")) fbarray = e.path();
  ASSERT_FALSE(fbarray.empty());
  std::string old = patch(fbarray, 0, "XXXXXXXX");
  auto r = attach_once();
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "ERROR corrupt")) << r.output;
  EXPECT_TRUE(contains(r.output, "fbarray " + fbarray)) << r.output;
  // The failed secondary left no local fbarray behind.
  size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator(domain_dir())) files += e.path().filename().string().starts_with("fbarray_");
  EXPECT_EQ(files, 2u) << "the primary's page table and its local copy only";
  patch(fbarray, 0, old);
  EXPECT_EQ(attach_once().code, 0);
}

TEST_F(Errors, HugeDirThatIsNotHugetlbfs) {
  auto r = run(proc("primary", {"--huge-dir=" + dir_.path()}));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "--huge-dir " + dir_.path() + " is not a hugetlbfs mount")) << r.output;
  EXPECT_TRUE(contains(r.output, "--no-huge")) << r.output;
}

TEST_F(Errors, OutOfHugepages) {
  MPOD_SKIP_UNLESS(cannot_use_hugepages(1));
  auto r = run(proc("primary", {"-m", "200000"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "ERROR no_memory")) << r.output;
  EXPECT_TRUE(contains(r.output, "nr_hugepages")) << r.output;
  // Nothing left behind: no page file of this prefix, no config.
  EXPECT_EQ(page_files(prefix_), 0u);
  EXPECT_FALSE(std::filesystem::exists(domain_dir() + "/config"));
}

// --no-huge on a filesystem too small for -m: the advice is about that
// filesystem, not about hugepages the process never asked for.
TEST_F(Errors, NoHugeOnAFullFilesystemSaysSoNotHugepages) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs";
  const std::string small = dir_.path() + "/small";
  std::filesystem::create_directory(small);
  if (mount("tmpfs", small.c_str(), "tmpfs", 0, "size=8m,mode=0755") != 0)
    GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  auto r = run({bin("mpod-test-proc"), "primary", "--runtime-dir=" + small, "--file-prefix=" + prefix_, "--no-huge",
                "-m", "64"});
  umount2(small.c_str(), MNT_DETACH);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "ERROR no_memory")) << r.output;
  EXPECT_TRUE(contains(r.output, "filesystem is full")) << r.output;
  EXPECT_TRUE(contains(r.output, small)) << r.output;
  EXPECT_FALSE(contains(r.output, "nr_hugepages")) << r.output;
}

TEST_F(Errors, SecondaryWhoseRangeIsTakenNamesTheMappingAndTheOption) {
  Child primary = start_primary();
  auto info = run(mpod("info"));
  auto at = info.output.find("shared range ");
  ASSERT_NE(at, std::string::npos) << info.output;
  uintptr_t base = std::stoull(info.output.substr(at + 13, 20), nullptr, 16);
  pid_t pid = fork();
  if (pid == 0) {
    // Occupy the primary's range in this process, as a library might.
    void* p = mmap(reinterpret_cast<void*>(base + (1 << 20)), 4096, PROT_READ,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) _exit(12);
    Options o;
    o.runtime_dir = dir_.path();
    o.file_prefix = prefix_;
    o.no_huge = true;
    o.proc_type = ProcType::secondary;
    try {
      Runtime::start(o);
      _exit(10);
    } catch (const Error& e) {
      bool ok = e.code() == Errc::address_conflict && contains(e.what(), "--base-virtaddr") &&
                contains(e.what(), "[anonymous]") && contains(e.what(), "r--p");
      if (!ok) std::fprintf(stderr, "unexpected error: %s\n", e.what());
      _exit(ok ? 0 : 11);
    }
  }
  int st;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
  EXPECT_EQ(attach_once().code, 0);
}

}  // namespace
}  // namespace mpod::test
