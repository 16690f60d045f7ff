// Memzones through a real runtime: contracts of reserve/lookup/free/list,
// growth by a secondary seen by the primary (lazy mapping), and repair of the
// table after a holder died in the middle of a reservation.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "domain_fixture.hpp"
#include "tests/helpers/error_code.hpp"
#include "mpod/runtime.hpp"
#include "src/lifecycle/shared_config.hpp"

namespace mpod::test {
namespace {

class Memzones : public DomainTest {
 protected:
  std::unique_ptr<Runtime> start_in_process(ProcType type, uint64_t mb = 8) {
    Options o;
    o.runtime_dir = dir_.path();
    o.file_prefix = prefix_;
    o.no_huge = true;
    o.memory_mb = mb;
    o.proc_type = type;
    return Runtime::start(o);
  }
};

using test::code_of;

TEST_F(Memzones, Contracts) {
  auto rt = start_in_process(ProcType::primary);
  auto& mz = rt->memzones();
  auto a = mz.reserve("alpha", 1000, 4096);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.addr) % 4096, 0u);
  EXPECT_EQ(a.len, 1000u);
  for (size_t i = 0; i < 1000; ++i) ASSERT_EQ(static_cast<char*>(a.addr)[i], 0) << "memzones come zeroed";
  std::memset(a.addr, 0xab, 1000);
  auto b = mz.reserve("beta.2-x_y", 64);
  EXPECT_GE(static_cast<char*>(b.addr), static_cast<char*>(a.addr) + 1000);

  EXPECT_EQ(code_of([&] { mz.reserve("alpha", 10); }), Errc::already_exists);
  EXPECT_EQ(code_of([&] { mz.reserve("", 10); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { mz.reserve(std::string(32, 'n'), 10); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { mz.reserve("bad name", 10); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { mz.reserve("zero", 0); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { mz.reserve("align", 10, 48); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { mz.reserve("ps", 10, 64, 12345); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { mz.reserve("huge", 64ull << 30); }), Errc::no_memory);
  EXPECT_EQ(code_of([&] { mz.free("nope"); }), Errc::not_found);

  auto list = mz.list();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "alpha");
  EXPECT_EQ(list[1].name, "beta.2-x_y");
  mz.free("alpha");
  EXPECT_FALSE(mz.lookup("alpha"));
  auto again = mz.reserve("alpha2", 512);  // first fit reuses the freed range, zeroed again
  EXPECT_EQ(again.addr, a.addr);
  EXPECT_EQ(static_cast<unsigned char*>(again.addr)[0], 0);
}

TEST_F(Memzones, GrowthBySecondaryIsSeenByThePrimary) {
  auto rt = start_in_process(ProcType::primary, 4);
  uint64_t before = rt->memory()[0].total_bytes;
  EXPECT_EQ(before, 4u << 20);
  pid_t pid = fork();
  if (pid == 0) {
    // A separate process, so a separate runtime: exec the test helper.
    std::vector<std::string> argv = proc("attach", {"--proc-type=secondary", "--no-huge"}, {"--reserve=big:20000000"});
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(s.data());
    a.push_back(nullptr);
    execv(a[0], a.data());
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  auto big = rt->memzones().lookup("big");  // maps the segments the secondary added
  ASSERT_TRUE(big);
  EXPECT_EQ(big->len, 20000000u);
  auto* p = static_cast<volatile char*>(big->addr);
  p[0] = 1;
  p[big->len - 1] = 2;  // would fault if the new segments were not mapped here
  EXPECT_GE(rt->memory()[0].total_bytes, 20000000u);
  EXPECT_GE(rt->memory()[0].used_bytes, 20000000u);
}

TEST_F(Memzones, HalfReservedEntryOfADeadHolderIsDiscarded) {
  auto rt = start_in_process(ProcType::primary);
  rt->memzones().reserve("kept", 128);
  // Make the table look as a holder killed mid-reserve leaves it: an entry in
  // state `reserving`, and the lock record still dirty.
  const std::string config = rt->domain_dir() + "/config";
  int fd = ::open(config.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  auto* cfg = static_cast<SharedConfig*>(mmap(nullptr, sizeof(SharedConfig), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(cfg, MAP_FAILED);
  MemzoneEntry* ghost = nullptr;
  for (auto& e : cfg->memzones.entries)
    if (e.state.load() == MemzoneEntry::free_) {
      ghost = &e;
      break;
    }
  ASSERT_NE(ghost, nullptr);
  std::strcpy(ghost->name, "ghost");
  ghost->addr = reinterpret_cast<uint64_t>(rt->base_addr());
  ghost->len = 1 << 20;
  ghost->state.store(MemzoneEntry::reserving);
  cfg->memzones.lock.dirty.store(1);

  EXPECT_FALSE(rt->memzones().lookup("ghost"));
  EXPECT_EQ(ghost->state.load(), MemzoneEntry::free_) << "the dead holder's half entry was not repaired";
  EXPECT_EQ(cfg->memzones.lock.dirty.load(), 0u);
  EXPECT_TRUE(rt->memzones().lookup("kept"));
  EXPECT_NO_THROW(rt->memzones().reserve("ghost", 64));
  munmap(cfg, sizeof(SharedConfig));
  ::close(fd);
}

}  // namespace
}  // namespace mpod::test
