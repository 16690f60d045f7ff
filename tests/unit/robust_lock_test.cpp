// SharedLock: mutual exclusion across processes, and a holder that dies
// inside the critical section is reported to the next holder (no deadlock).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "src/os/os.hpp"
#include "src/runtime/registry.hpp"
#include "src/runtime/shared_lock.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod {
namespace {

struct Shared {
  LockRecord rec;
  uint64_t counter;
  uint64_t in_section;  // must never exceed 1
  uint64_t max_seen;
};

class RobustLock : public testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directory(registry::procs_dir(dir_.path()));
    path_ = dir_.path() + "/config";
    fd_ = os::open_file(path_, O_RDWR | O_CREAT, 0600);
    os::truncate_file(fd_.get(), 4096, path_);
    shared_ = static_cast<Shared*>(os::map_shared(4096, fd_.get(), path_));
  }
  void TearDown() override { os::unmap(shared_, 4096); }

  // Each process opens the file itself: OFD locks are per open file description.
  struct Handle {
    os::Fd fd;
    std::unique_ptr<SharedLock> lock;
  };
  Handle open_lock(const ProcessId& self, const char* what = "test") {
    Handle h;
    h.fd = os::open_file(path_, O_RDWR);
    h.lock = std::make_unique<SharedLock>(h.fd.get(), 3, &shared_->rec, path_, dir_.path(), self, what);
    return h;
  }

  test::TempDir dir_;
  std::string path_;
  os::Fd fd_;
  Shared* shared_ = nullptr;
};

TEST_F(RobustLock, ExcludesAcrossProcesses) {
  constexpr int kProcs = 4, kIters = 300;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      auto h = open_lock(ProcessId::random());
      for (int i = 0; i < kIters; ++i) {
        SharedLockGuard g(*h.lock);
        uint64_t now = ++shared_->in_section;
        if (now > shared_->max_seen) shared_->max_seen = now;
        uint64_t c = shared_->counter;  // non-atomic read-modify-write: only safe under the lock
        if (i % 50 == 0) usleep(100);
        shared_->counter = c + 1;
        --shared_->in_section;
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t p : pids) {
    int st;
    waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  EXPECT_EQ(shared_->counter, uint64_t(kProcs) * kIters);
  EXPECT_EQ(shared_->max_seen, 1u);
}

TEST_F(RobustLock, HolderKilledInsideIsReportedAndDoesNotBlock) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t holder = fork();
  if (holder == 0) {
    auto h = open_lock(ProcessId::random());
    h.lock->lock();
    char b = 'x';
    (void)!write(ready[1], &b, 1);
    pause();  // dies holding it
    _exit(0);
  }
  char b;
  ASSERT_EQ(read(ready[0], &b, 1), 1);
  auto me = open_lock(ProcessId::random());
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  EXPECT_TRUE(me.lock->lock(2'000'000'000ull)) << "the next holder must be told its predecessor died";
  me.lock->unlock();
  EXPECT_FALSE(me.lock->lock()) << "a clean release is not a death";
  me.lock->unlock();
}

TEST_F(RobustLock, LiveHolderThatDoesNotReleaseTimesOutNamingIt) {
  auto holder_reg_dir = dir_.path();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t holder = fork();
  if (holder == 0) {
    auto reg = registry::Registration::create(holder_reg_dir, Role::secondary);
    auto h = open_lock(reg.info().id, "memzone table");
    h.lock->lock();
    (void)!write(ready[1], reg.info().id.bytes.data(), 16);
    pause();
    _exit(0);
  }
  ProcessId holder_id;
  ASSERT_EQ(read(ready[0], holder_id.bytes.data(), 16), 16);
  auto me = open_lock(ProcessId::random(), "memzone table");
  try {
    me.lock->lock(100'000'000ull);
    ADD_FAILURE() << "took a lock a live process holds";
    me.lock->unlock();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::timed_out);
    std::string msg = e.what();
    EXPECT_NE(msg.find("memzone table lock"), std::string::npos) << msg;
    EXPECT_NE(msg.find(holder_id.short_hex()), std::string::npos) << msg;
    EXPECT_NE(msg.find("alive"), std::string::npos) << msg;
  }
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
}

}  // namespace
}  // namespace mpod
