// The SIGBUS guard: a fault in a mapping mpod made (os::map_shared) costs
// the page, not the process; a fault anywhere else, or a SIGBUS sent by
// kill(), ends the process as it always did. Each case runs in a child.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "src/os/os.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod {
namespace {

using test::TempDir;

// Whether a child ended as the disposition before the guard makes it end:
// by SIGBUS, or, under AddressSanitizer or ThreadSanitizer, whose own SIGBUS
// handler was there first, by its report (an abort, or a non-zero exit).
::testing::AssertionResult ended_as_before(int status) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  if ((WIFSIGNALED(status) && (WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGABRT)) ||
      (WIFEXITED(status) && WEXITSTATUS(status) != 0))
    return ::testing::AssertionSuccess();
#else
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) return ::testing::AssertionSuccess();
#endif
  return ::testing::AssertionFailure() << (WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                                               : "exited " + std::to_string(WEXITSTATUS(status)));
}

// Runs `body` in a child; its wait status.
int in_child(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

// A two-page file, mapped by `map`, then truncated to nothing; reads the
// second page. Exit 0 if it read zero, 2 if the guard recovered nothing.
int truncate_under(const std::string& path, const std::function<void*(int fd, size_t len)>& map) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ::ftruncate(fd, off_t(2 * page)) != 0) return 3;
  auto* p = static_cast<volatile uint8_t*>(map(fd, 2 * page));
  p[page] = 7;
  if (::ftruncate(fd, 0) != 0) return 4;
  const uint8_t v = p[page];  // SIGBUS: the file has no such page now
  if (v != 0) return 5;
  p[page] = 9;  // and it is writable, privately
  return os::bus_faults_recovered() >= 1 ? 0 : 2;
}

TEST(BusGuard, AFaultInAGuardedMappingCostsThePageNotTheProcess) {
  TempDir dir;
  const int status = in_child([&] {
    os::install_bus_guard();
    return truncate_under(dir.path() + "/f", [&](int fd, size_t len) { return os::map_shared(len, fd, "f"); });
  });
  ASSERT_TRUE(WIFEXITED(status)) << "ended by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(BusGuard, AFaultElsewhereStillEndsTheProcess) {
  TempDir dir;
  const int status = in_child([&] {
    os::install_bus_guard();
    return truncate_under(dir.path() + "/f", [](int fd, size_t len) {
      return ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);  // not made by mpod
    });
  });
  EXPECT_TRUE(ended_as_before(status));
}

TEST(BusGuard, AnUnmappedRangeIsNoLongerGuarded) {
  TempDir dir;
  const int status = in_child([&] {
    os::install_bus_guard();
    return truncate_under(dir.path() + "/f", [](int fd, size_t len) {
      void* p = os::map_shared(len, fd, "f");
      os::unmap(p, len);
      return ::mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);  // same range, not mpod's now
    });
  });
  EXPECT_TRUE(ended_as_before(status));
}

TEST(BusGuard, ASigbusSentByKillStillEndsTheProcess) {
  const int status = in_child([] {
    os::install_bus_guard();
    ::kill(::getpid(), SIGBUS);
    return 0;
  });
  EXPECT_TRUE(ended_as_before(status));
}

}  // namespace
}  // namespace mpod
