// FbArray: the find operations against a brute-force model, sharing between
// attachments and processes, and the lock rules (exclusive to initialise,
// shared while in use) that the seed's DPDK failure is about.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <vector>

#include "mpod/error.hpp"
#include "mpod/fbarray.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod {
namespace {

using test::TempDir;

ProcessId some_id() { return ProcessId::random(); }

// Reference implementations over a vector<bool>.
std::optional<uint32_t> ref_next(const std::vector<bool>& v, uint32_t start, bool used) {
  for (uint32_t i = start; i < v.size(); ++i)
    if (v[i] == used) return i;
  return std::nullopt;
}
uint32_t ref_run(const std::vector<bool>& v, uint32_t start, bool used) {
  uint32_t n = 0;
  while (start + n < v.size() && v[start + n] == used) ++n;
  return n;
}
std::optional<uint32_t> ref_n_free(const std::vector<bool>& v, uint32_t start, uint32_t n) {
  for (uint32_t i = start; i + n <= v.size(); ++i)
    if (ref_run(v, i, false) >= n) return i;
  return std::nullopt;
}
FbArray::Run ref_biggest(const std::vector<bool>& v, uint32_t start) {
  FbArray::Run best;
  for (uint32_t i = start; i < v.size();) {
    uint32_t r = ref_run(v, i, false);
    if (r > best.len) best = {i, r};
    i += r ? r : 1;
  }
  return best;
}

TEST(FbArray, FindOperationsMatchAReferenceModel) {
  TempDir dir;
  for (uint32_t len : {1u, 63u, 64u, 65u, 127u, 128u, 1000u}) {
    auto a = FbArray::create(dir.path(), "model_" + std::to_string(len), len, 16, some_id());
    std::mt19937 rng(len);
    std::vector<bool> model(len, false);
    for (int round = 0; round < 40; ++round) {
      // Random pattern with long runs, so runs straddle word boundaries.
      uint32_t i = 0;
      while (i < len) {
        bool used = rng() % 2;
        uint32_t run = 1 + rng() % 90;
        for (uint32_t k = i; k < std::min(len, i + run); ++k) {
          model[k] = used;
          used ? a.set_used(k) : a.set_free(k);
        }
        i += run;
      }
      uint32_t count = 0;
      for (bool b : model) count += b;
      ASSERT_EQ(a.count_used(), count);
      for (uint32_t s : {0u, 1u, 63u, 64u, 65u, len / 2, len - 1, len}) {
        if (s > len) continue;
        EXPECT_EQ(a.find_next_used(s), ref_next(model, s, true)) << "len " << len << " start " << s;
        EXPECT_EQ(a.find_next_free(s), ref_next(model, s, false)) << "len " << len << " start " << s;
        if (s < len) {
          EXPECT_EQ(a.run_length_used(s), ref_run(model, s, true));
          EXPECT_EQ(a.run_length_free(s), ref_run(model, s, false));
        }
        for (uint32_t n : {1u, 2u, 64u, 70u})
          EXPECT_EQ(a.find_next_n_free(s, n), ref_n_free(model, s, n)) << "len " << len << " n " << n;
        auto b = a.find_biggest_free(s), r = ref_biggest(model, s);
        EXPECT_EQ(b.start, r.start);
        EXPECT_EQ(b.len, r.len);
      }
    }
  }
}

TEST(FbArray, SetAndFreeReportThePreviousStateAndRangeIsChecked) {
  TempDir dir;
  auto a = FbArray::create(dir.path(), "flags", 100, 8, some_id());
  EXPECT_FALSE(a.set_used(99));
  EXPECT_TRUE(a.set_used(99));
  EXPECT_TRUE(a.is_used(99));
  EXPECT_TRUE(a.set_free(99));
  EXPECT_FALSE(a.set_free(99));
  EXPECT_EQ(a.count_used(), 0u);
  try {
    a.get(100);
    FAIL() << "index 100 of 100 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos);
  }
}

TEST(FbArray, AttachmentsAndProcessesSeeTheSameElements) {
  TempDir dir;
  auto id = some_id();
  auto a = FbArray::create(dir.path(), "shared", 256, sizeof(uint64_t), id);
  auto b = FbArray::attach(dir.path(), "shared");
  EXPECT_EQ(b.creator(), id);
  *a.at<uint64_t>(200) = 0xfeedface;
  a.set_used(200);
  EXPECT_TRUE(b.is_used(200));
  EXPECT_EQ(*b.at<uint64_t>(200), 0xfeedfaceu);
  pid_t pid = fork();
  if (pid == 0) {
    auto c = FbArray::attach(dir.path(), "shared");
    bool ok = c.is_used(200) && *c.at<uint64_t>(200) == 0xfeedface;
    *c.at<uint64_t>(7) = 77;
    c.set_used(7);
    _exit(ok ? 0 : 1);
  }
  int st;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  EXPECT_TRUE(a.is_used(7));
  EXPECT_EQ(*a.at<uint64_t>(7), 77u);
  EXPECT_EQ(a.count_used(), 2u);
}

TEST(FbArray, InUseFilesCannotBeReinitialisedOrDestroyedUntilTheHolderDies) {
  TempDir dir;
  auto creator = some_id();
  { auto a = FbArray::create(dir.path(), "held", 64, 8, creator); }
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t holder = fork();
  if (holder == 0) {
    auto a = FbArray::attach(dir.path(), "held");
    char b = 'x';
    (void)!write(ready[1], &b, 1);
    pause();
    _exit(0);
  }
  char b;
  ASSERT_EQ(read(ready[0], &b, 1), 1);
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      if (attempt == 0) FbArray::create(dir.path(), "held", 64, 8, some_id());
      else FbArray::destroy(dir.path(), "held");
      FAIL() << "a file in use was " << (attempt ? "destroyed" : "re-initialised");
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::busy);
      std::string msg = e.what();
      EXPECT_NE(msg.find(dir.path() + "/held"), std::string::npos) << msg;
      EXPECT_NE(msg.find(creator.short_hex()), std::string::npos) << "names the creator: " << msg;
    }
  }
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  // The kernel dropped the dead holder's lock: the file can be re-made and removed.
  auto again = FbArray::create(dir.path(), "held", 64, 8, some_id());
  EXPECT_EQ(again.count_used(), 0u);
  again.destroy();
  EXPECT_FALSE(test::run({"test", "-e", dir.path() + "/held"}).code == 0);
}

void write_bytes(const std::string& path, off_t off, const std::string& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(off);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(FbArray, CorruptTruncatedAndMissingFilesAreRefusedByName) {
  TempDir dir;
  const std::string path = dir.path() + "/bad";
  auto expect = [&](Errc code, const char* what) {
    try {
      FbArray::attach(dir.path(), "bad");
      FAIL() << "attached a " << what << " file";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  expect(Errc::not_found, "missing");
  { auto a = FbArray::create(dir.path(), "bad", 1000, 8, some_id()); }
  write_bytes(path, 8, std::string("\x09\x00\x00\x00", 4));
  expect(Errc::version_mismatch, "future-version");
  write_bytes(path, 8, std::string("\x01\x00\x00\x00", 4));
  write_bytes(path, 16, std::string("\xff\xff\x00\x00", 4));  // len no longer matches the geometry
  expect(Errc::corrupt, "inconsistent");
  write_bytes(path, 16, std::string("\xe8\x03\x00\x00", 4));  // back to 1000
  EXPECT_NO_THROW(FbArray::attach(dir.path(), "bad"));
  ASSERT_EQ(truncate(path.c_str(), 100), 0);
  expect(Errc::corrupt, "truncated");
  write_bytes(path, 0, "XXXXXXXX");
  expect(Errc::corrupt, "bad-magic");
}

}  // namespace
}  // namespace mpod
