// FbArray: lifecycle, bit operations at word boundaries, an exhaustive
// comparison with a reference model, sharing between attachments and
// processes, the lock rules, and refusal of damaged files.
// Complements fbarray_ops_test.cpp (reference-model and cross-process basics).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mpod/error.hpp"
#include "mpod/fbarray.hpp"
#include "src/os/os.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod {
namespace {

using test::TempDir;

// ---- process helpers ----

// Runs `f` in a child; its return value is the exit code (99 if it throws).
pid_t fork_child(const std::function<int()>& f) {
  pid_t pid = fork();
  if (pid == 0) {
    int rc = 99;
    try {
      rc = f();
    } catch (...) {
    }
    _exit(rc);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// A one-byte signal from a child: "I am ready".
struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { EXPECT_EQ(pipe(fd), 0); }
  ~Pipe() {
    close(fd[0]);
    close(fd[1]);
  }
  void signal() { (void)!write(fd[1], "x", 1); }
  bool wait() {
    char b;
    return read(fd[0], &b, 1) == 1;
  }
};

// A child that attaches to dir/name (or creates it when `create_len` > 0),
// signals, and waits to be killed.
pid_t spawn_holder(const std::string& dir, const std::string& name, Pipe& ready, uint32_t create_len = 0,
                   ProcessId creator = {}) {
  return fork_child([&]() -> int {
    FbArray a = create_len ? FbArray::create(dir, name, create_len, 8, creator) : FbArray::attach(dir, name);
    ready.signal();
    for (;;) pause();
  });
}

template <class F>
Error expect_error(F&& f, const char* what) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << what << ": no error thrown";
  return Error(Errc::system, "(none)");
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// ---- lifecycle ----

TEST(FbArrayLifecycle, CreateDetachAttachDestroy) {
  TempDir dir;
  const std::string path = dir.path() + "/life";
  auto creator = ProcessId::random();
  FbArray a = FbArray::create(dir.path(), "life", 1000, 24, creator);
  ASSERT_TRUE(a.valid());
  EXPECT_EQ(a.path(), path);
  EXPECT_EQ(a.len(), 1000u);
  EXPECT_EQ(a.elt_size(), 24u);
  EXPECT_EQ(a.count_used(), 0u);
  EXPECT_EQ(a.creator(), creator);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size % sysconf(_SC_PAGESIZE), 0) << "file size is whole pages";
  EXPECT_GE(static_cast<uint64_t>(st.st_size), 1000u * 24 + 1000 / 8);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (uint32_t i = 0; i < 1000; ++i) {
    auto* p = a.at<unsigned char>(i);
    for (int b = 0; b < 24; ++b) ASSERT_EQ(p[b], 0) << "element " << i << " not zeroed";
    EXPECT_FALSE(a.is_used(i));
  }
  std::memcpy(a.get(999), "last element", 13);
  a.set_used(999);
  a.set_used(0);

  a.detach();
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(stat(path.c_str(), &st), 0) << "detach keeps the file";
  a.detach();  // twice is fine

  FbArray b = FbArray::attach(dir.path(), "life");
  EXPECT_EQ(b.len(), 1000u);
  EXPECT_EQ(b.elt_size(), 24u);
  EXPECT_EQ(b.creator(), creator);
  EXPECT_EQ(b.count_used(), 2u);
  EXPECT_TRUE(b.is_used(999));
  EXPECT_TRUE(b.is_used(0));
  EXPECT_STREQ(static_cast<const char*>(b.get(999)), "last element");

  b.destroy();
  EXPECT_FALSE(b.valid());
  EXPECT_NE(stat(path.c_str(), &st), 0) << "destroy removes the file";
  EXPECT_FALSE(FbArray::destroy(dir.path(), "life")) << "destroying a missing file reports false";
  FbArray none;
  EXPECT_FALSE(none.valid());
  EXPECT_NO_THROW(none.destroy());
  EXPECT_NO_THROW(none.detach());
}

TEST(FbArrayLifecycle, StaticDestroyRemovesAnUnusedFile) {
  TempDir dir;
  { FbArray::create(dir.path(), "gone", 10, 4, ProcessId::random()); }
  EXPECT_TRUE(FbArray::destroy(dir.path(), "gone"));
  EXPECT_FALSE(os::path_exists(dir.path() + "/gone"));
  EXPECT_FALSE(FbArray::destroy(dir.path(), "gone"));
}

TEST(FbArrayLifecycle, ZeroLengthOrElementSizeIsRejected) {
  TempDir dir;
  auto e = expect_error([&] { FbArray::create(dir.path(), "z", 0, 8, ProcessId::random()); }, "len 0");
  EXPECT_EQ(e.code(), Errc::invalid_argument);
  e = expect_error([&] { FbArray::create(dir.path(), "z", 8, 0, ProcessId::random()); }, "elt_size 0");
  EXPECT_EQ(e.code(), Errc::invalid_argument);
  EXPECT_FALSE(os::path_exists(dir.path() + "/z")) << "nothing is left behind";
}

TEST(FbArrayLifecycle, CreateInAMissingDirectoryIsNotFound) {
  TempDir dir;
  auto e = expect_error([&] { FbArray::create(dir.path() + "/nope", "x", 8, 8, ProcessId::random()); }, "missing dir");
  EXPECT_EQ(e.code(), Errc::not_found);
  EXPECT_TRUE(contains(e.what(), dir.path() + "/nope/x")) << e.what();
}

TEST(FbArrayLifecycle, RecreatingAStaleFileStartsClean) {
  TempDir dir;
  {
    auto a = FbArray::create(dir.path(), "stale", 200, 16, ProcessId::random());
    for (uint32_t i = 0; i < 200; i += 3) {
      std::memset(a.get(i), 0xab, 16);
      a.set_used(i);
    }
  }
  auto id = ProcessId::random();
  auto b = FbArray::create(dir.path(), "stale", 130, 32, id);  // different geometry, too
  EXPECT_EQ(b.len(), 130u);
  EXPECT_EQ(b.elt_size(), 32u);
  EXPECT_EQ(b.creator(), id);
  EXPECT_EQ(b.count_used(), 0u);
  EXPECT_FALSE(b.find_next_used(0).has_value());
  for (uint32_t i = 0; i < 130; ++i) {
    auto* p = b.at<unsigned char>(i);
    for (int k = 0; k < 32; ++k) ASSERT_EQ(p[k], 0) << "stale byte in element " << i;
  }
  auto c = FbArray::attach(dir.path(), "stale");
  EXPECT_EQ(c.len(), 130u);
}

TEST(FbArrayLifecycle, MoveTransfersTheAttachment) {
  TempDir dir;
  FbArray a = FbArray::create(dir.path(), "mv", 64, 8, ProcessId::random());
  a.set_used(5);
  FbArray b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  ASSERT_TRUE(b.valid());
  EXPECT_TRUE(b.is_used(5));
  FbArray c;
  c = std::move(b);
  EXPECT_FALSE(b.valid());  // NOLINT(bugprone-use-after-move)
  ASSERT_TRUE(c.valid());
  EXPECT_EQ(c.count_used(), 1u);
  // Assigning over a live attachment detaches it: its lock goes, so the file
  // it used can be destroyed.
  FbArray other = FbArray::create(dir.path(), "other", 64, 8, ProcessId::random());
  c = std::move(other);
  EXPECT_EQ(c.path(), dir.path() + "/other");
  EXPECT_TRUE(FbArray::destroy(dir.path(), "mv"));
  c = FbArray();
  EXPECT_TRUE(FbArray::destroy(dir.path(), "other"));
}

// ---- elements and bits ----

TEST(FbArrayBits, ElementsDoNotOverlapForOddSizes) {
  TempDir dir;
  for (uint32_t elt : {1u, 3u, 7u, 13u, 64u, 100u}) {
    const uint32_t len = 517;
    auto a = FbArray::create(dir.path(), "odd" + std::to_string(elt), len, elt, ProcessId::random());
    for (uint32_t i = 0; i < len; ++i) std::memset(a.get(i), static_cast<int>(i % 251 + 1), elt);
    for (uint32_t i = 0; i < len; ++i) {
      auto* p = a.at<unsigned char>(i);
      for (uint32_t k = 0; k < elt; ++k) ASSERT_EQ(p[k], i % 251 + 1) << "elt " << elt << " idx " << i;
      if (i) {
        ASSERT_EQ(static_cast<char*>(a.get(i)) - static_cast<char*>(a.get(i - 1)), static_cast<ptrdiff_t>(elt));
      }
    }
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.get(0)) % 64, 0u) << "elements start 64-byte aligned";
    // Writing elements does not touch the used bits.
    EXPECT_EQ(a.count_used(), 0u);
    EXPECT_FALSE(a.find_next_used(0));
  }
}

TEST(FbArrayBits, OutOfRangeIndexThrowsNamingThePath) {
  TempDir dir;
  auto a = FbArray::create(dir.path(), "range", 130, 8, ProcessId::random());
  for (uint32_t idx : {130u, 131u, 191u, 192u, UINT32_MAX}) {
    SCOPED_TRACE(idx);
    for (int op = 0; op < 5; ++op) {
      auto e = expect_error(
          [&] {
            switch (op) {
              case 0: a.get(idx); break;
              case 1: a.at<uint64_t>(idx); break;
              case 2: a.set_used(idx); break;
              case 3: a.set_free(idx); break;
              case 4: a.is_used(idx); break;
            }
          },
          "out of range");
      EXPECT_EQ(e.code(), Errc::invalid_argument) << op;
      EXPECT_TRUE(contains(e.what(), a.path())) << e.what();
      EXPECT_TRUE(contains(e.what(), std::to_string(idx))) << e.what();
    }
  }
  EXPECT_EQ(a.count_used(), 0u) << "a rejected set_used changed the count";
  EXPECT_NO_THROW(a.get(129));
  // Searches starting at or past the end find nothing rather than throwing.
  for (uint32_t s : {130u, 131u, 1000u, UINT32_MAX}) {
    EXPECT_FALSE(a.find_next_used(s));
    EXPECT_FALSE(a.find_next_free(s));
    EXPECT_FALSE(a.find_next_n_free(s, 1));
    EXPECT_EQ(a.run_length_free(s), 0u);
    EXPECT_EQ(a.run_length_used(s), 0u);
    EXPECT_EQ(a.find_biggest_free(s).len, 0u);
  }
}

TEST(FbArrayBits, SetAndFreeReturnThePreviousStateAndKeepCount) {
  TempDir dir;
  auto a = FbArray::create(dir.path(), "count", 1000, 4, ProcessId::random());
  std::mt19937 rng(7);
  std::vector<bool> model(1000);
  uint32_t used = 0;
  for (int step = 0; step < 20000; ++step) {
    uint32_t i = rng() % 1000;
    bool set = rng() % 2;
    bool was = set ? a.set_used(i) : a.set_free(i);
    ASSERT_EQ(was, static_cast<bool>(model[i])) << "step " << step << " idx " << i;
    if (set && !model[i]) ++used;
    if (!set && model[i]) --used;
    model[i] = set;
    ASSERT_EQ(a.count_used(), used) << "step " << step;
  }
  for (uint32_t i = 0; i < 1000; ++i) ASSERT_EQ(a.is_used(i), static_cast<bool>(model[i])) << i;
}

// Hand-made patterns around the 64-bit word boundaries of a 1000-element array
// (1000 is not a multiple of 64: the last word is partial).
TEST(FbArrayBits, WordBoundaries) {
  TempDir dir;
  auto a = FbArray::create(dir.path(), "words", 1000, 8, ProcessId::random());
  // All free.
  EXPECT_EQ(a.find_next_free(0), 0u);
  EXPECT_EQ(a.find_next_free(999), 999u);
  EXPECT_FALSE(a.find_next_used(0));
  EXPECT_EQ(a.run_length_free(0), 1000u);
  EXPECT_EQ(a.run_length_free(63), 937u);
  EXPECT_EQ(a.run_length_free(999), 1u);
  EXPECT_EQ(a.run_length_used(0), 0u);
  EXPECT_EQ(a.find_next_n_free(0, 1000), 0u);
  EXPECT_FALSE(a.find_next_n_free(0, 1001));
  EXPECT_EQ(a.find_next_n_free(1, 999), 1u);
  EXPECT_FALSE(a.find_next_n_free(1, 1000));
  auto r = a.find_biggest_free(0);
  EXPECT_EQ(r.start, 0u);
  EXPECT_EQ(r.len, 1000u);
  r = a.find_biggest_free(500);
  EXPECT_EQ(r.start, 500u);
  EXPECT_EQ(r.len, 500u);

  // A run straddling the first boundary: 63 and 64.
  a.set_used(63);
  a.set_used(64);
  EXPECT_EQ(a.find_next_used(0), 63u);
  EXPECT_EQ(a.find_next_used(64), 64u);
  EXPECT_EQ(a.run_length_free(0), 63u);
  EXPECT_EQ(a.run_length_used(63), 2u);
  EXPECT_EQ(a.run_length_used(64), 1u);
  EXPECT_EQ(a.find_next_free(63), 65u);
  EXPECT_EQ(a.find_next_n_free(0, 63), 0u);
  EXPECT_EQ(a.find_next_n_free(0, 64), 65u);
  EXPECT_EQ(a.find_next_n_free(1, 63), 65u);

  // A used run from 100 to 200 covers the whole boundary at 127/128.
  for (uint32_t i = 100; i <= 200; ++i) a.set_used(i);
  EXPECT_EQ(a.run_length_used(100), 101u);
  EXPECT_EQ(a.run_length_used(127), 74u);
  EXPECT_EQ(a.run_length_used(128), 73u);
  EXPECT_EQ(a.find_next_free(100), 201u);
  EXPECT_EQ(a.find_next_free(128), 201u);
  EXPECT_EQ(a.find_next_used(65), 100u);
  EXPECT_EQ(a.run_length_free(65), 35u);
  EXPECT_EQ(a.find_next_n_free(65, 36), 201u);
  EXPECT_EQ(a.find_next_n_free(65, 35), 65u);

  // The last element, in the partial last word.
  a.set_used(999);
  EXPECT_EQ(a.find_next_used(201), 999u);
  EXPECT_EQ(a.run_length_used(999), 1u);
  EXPECT_FALSE(a.find_next_free(999));
  EXPECT_EQ(a.run_length_free(201), 798u);
  EXPECT_EQ(a.find_next_n_free(0, 798), 201u);
  EXPECT_FALSE(a.find_next_n_free(0, 799));
  r = a.find_biggest_free(0);
  EXPECT_EQ(r.start, 201u);
  EXPECT_EQ(r.len, 798u);
  EXPECT_EQ(a.count_used(), 2u + 101u + 1u);

  // Free runs ending exactly at a word end and starting exactly at the next.
  for (uint32_t i = 201; i < 999; ++i) a.set_used(i);
  a.set_free(255);  // last of word 3
  a.set_free(256);  // first of word 4
  a.set_free(998);
  EXPECT_EQ(a.find_next_free(201), 255u);
  EXPECT_EQ(a.run_length_free(255), 2u);
  EXPECT_EQ(a.find_next_free(257), 998u);
  EXPECT_EQ(a.find_next_n_free(201, 2), 255u);
  EXPECT_FALSE(a.find_next_n_free(257, 2));
  r = a.find_biggest_free(200);
  EXPECT_EQ(r.start, 255u);
  EXPECT_EQ(r.len, 2u);

  // Everything used.
  for (uint32_t i = 0; i < 1000; ++i) a.set_used(i);
  EXPECT_EQ(a.count_used(), 1000u);
  EXPECT_FALSE(a.find_next_free(0));
  EXPECT_FALSE(a.find_next_n_free(0, 1));
  EXPECT_EQ(a.run_length_used(0), 1000u);
  EXPECT_EQ(a.find_next_used(999), 999u);
  r = a.find_biggest_free(0);
  EXPECT_EQ(r.len, 0u);
}

TEST(FbArrayBits, ExactMultipleOf64HasNoPhantomElements) {
  TempDir dir;
  for (uint32_t len : {64u, 128u, 192u}) {
    auto a = FbArray::create(dir.path(), "m" + std::to_string(len), len, 8, ProcessId::random());
    for (uint32_t i = 0; i < len; ++i) a.set_used(i);
    EXPECT_FALSE(a.find_next_free(0)) << len;
    EXPECT_FALSE(a.find_next_free(len - 1)) << len;
    EXPECT_EQ(a.run_length_used(0), len);
    a.set_free(len - 1);
    EXPECT_EQ(a.find_next_free(0), len - 1);
    EXPECT_EQ(a.run_length_free(len - 1), 1u);
    EXPECT_EQ(a.find_next_n_free(0, 1), len - 1);
    EXPECT_FALSE(a.find_next_n_free(0, 2));
  }
}

// ---- exhaustive comparison with a reference model ----

// Every answer for every start, computed backwards in O(len).
struct Reference {
  explicit Reference(const std::vector<bool>& v) : n(static_cast<uint32_t>(v.size())) {
    next_used.assign(n + 1, UINT32_MAX);
    next_free.assign(n + 1, UINT32_MAX);
    run_used.assign(n + 1, 0);
    run_free.assign(n + 1, 0);
    best.assign(n + 1, FbArray::Run{});
    for (uint32_t i = n; i-- > 0;) {
      next_used[i] = v[i] ? i : next_used[i + 1];
      next_free[i] = v[i] ? next_free[i + 1] : i;
      run_used[i] = v[i] ? run_used[i + 1] + 1 : 0;
      run_free[i] = v[i] ? 0 : run_free[i + 1] + 1;
      best[i] = best[i + 1];
      if (run_free[i] > 0 && run_free[i] >= best[i].len) best[i] = {i, run_free[i]};  // earliest wins ties
    }
  }
  std::optional<uint32_t> opt(uint32_t x) const { return x == UINT32_MAX ? std::nullopt : std::optional(x); }
  std::optional<uint32_t> n_free(uint32_t start, uint32_t k) const {
    for (uint32_t i = start; i < n; ++i)
      if (run_free[i] >= k) return i;
    return std::nullopt;
  }
  uint32_t n;
  std::vector<uint32_t> next_used, next_free, run_used, run_free;
  std::vector<FbArray::Run> best;
};

void check_against_reference(const FbArray& a, const std::vector<bool>& v, bool every_biggest,
                             const std::string& label) {
  Reference ref(v);
  const uint32_t n = ref.n;
  uint32_t used = 0;
  for (bool b : v) used += b;
  ASSERT_EQ(a.count_used(), used) << label;
  for (uint32_t s = 0; s <= n; ++s) {
    ASSERT_EQ(a.find_next_used(s), ref.opt(ref.next_used[s])) << label << " start " << s;
    ASSERT_EQ(a.find_next_free(s), ref.opt(ref.next_free[s])) << label << " start " << s;
    ASSERT_EQ(a.run_length_used(s), ref.run_used[s]) << label << " start " << s;
    ASSERT_EQ(a.run_length_free(s), ref.run_free[s]) << label << " start " << s;
    if (every_biggest || s % 61 == 0 || s + 1 >= n) {
      auto got = a.find_biggest_free(s);
      ASSERT_EQ(got.len, ref.best[s].len) << label << " start " << s;
      if (got.len) {
        ASSERT_EQ(got.start, ref.best[s].start) << label << " start " << s;
      }
    }
  }
  // find_next_n_free for n around word sizes and the longest run, from a spread of starts.
  uint32_t longest = ref.best[0].len;
  for (uint32_t s : {0u, 1u, 62u, 63u, 64u, 65u, 127u, 128u, n / 3, n / 2, n - 1, n}) {
    if (s > n) continue;
    for (uint32_t k : {1u, 2u, 3u, 31u, 63u, 64u, 65u, 128u, 129u, longest, longest + 1, n, n + 1}) {
      if (k == 0) continue;
      ASSERT_EQ(a.find_next_n_free(s, k), ref.n_free(s, k)) << label << " start " << s << " n " << k;
    }
  }
}

// Writes `v` into `a` (which must match `prev`), checking set/free return values.
void apply(FbArray& a, std::vector<bool>& prev, const std::vector<bool>& v) {
  for (uint32_t i = 0; i < v.size(); ++i) {
    bool was = v[i] ? a.set_used(i) : a.set_free(i);
    ASSERT_EQ(was, static_cast<bool>(prev[i])) << i;
  }
  prev = v;
}

TEST(FbArrayModel, EveryStartMatchesTheReferenceOnRandomPatterns) {
  TempDir dir;
  const uint32_t lens[] = {1, 2, 63, 64, 65, 127, 128, 129, 191, 255, 1000, 4103};
  std::mt19937 rng(20240607);
  for (uint32_t len : lens) {
    auto a = FbArray::create(dir.path(), "ref" + std::to_string(len), len, 8, ProcessId::random());
    std::vector<bool> cur(len, false);
    const bool every_biggest = len <= 1000;
    auto run = [&](const std::vector<bool>& pattern, const std::string& kind) {
      apply(a, cur, pattern);
      check_against_reference(a, pattern, every_biggest, "len " + std::to_string(len) + " " + kind);
    };
    std::vector<bool> v(len);
    run(std::vector<bool>(len, false), "all free");
    if (HasFatalFailure()) return;
    run(std::vector<bool>(len, true), "all used");
    if (HasFatalFailure()) return;
    for (uint32_t i = 0; i < len; ++i) v[i] = i % 2;
    run(v, "alternating");
    if (HasFatalFailure()) return;
    for (int density : {5, 50, 95}) {
      for (int round = 0; round < 3; ++round) {
        for (uint32_t i = 0; i < len; ++i) v[i] = static_cast<int>(rng() % 100) < density;
        run(v, "density " + std::to_string(density));
        if (HasFatalFailure()) return;
      }
    }
    for (int round = 0; round < 6; ++round) {
      // Runs of random length (up to 3 words), so runs straddle word boundaries.
      uint32_t i = 0;
      bool used = rng() % 2;
      while (i < len) {
        uint32_t r = 1 + rng() % 192;
        for (uint32_t k = i; k < std::min(len, i + r); ++k) v[k] = used;
        i += r;
        used = !used;
      }
      run(v, "runs round " + std::to_string(round));
      if (HasFatalFailure()) return;
    }
  }
}

// ---- sharing ----

TEST(FbArrayShare, TwoAttachmentsInOneProcessShareStorage) {
  TempDir dir;
  auto a = FbArray::create(dir.path(), "two", 300, sizeof(uint64_t), ProcessId::random());
  auto b = FbArray::attach(dir.path(), "two");
  ASSERT_NE(a.get(0), b.get(0)) << "two separate mappings";
  for (uint32_t i = 0; i < 300; i += 7) {
    *a.at<uint64_t>(i) = 1000 + i;
    a.set_used(i);
  }
  for (uint32_t i = 0; i < 300; ++i) {
    ASSERT_EQ(b.is_used(i), i % 7 == 0) << i;
    if (i % 7 == 0) {
      ASSERT_EQ(*b.at<uint64_t>(i), 1000 + i);
    }
  }
  EXPECT_EQ(b.count_used(), a.count_used());
  EXPECT_TRUE(b.set_free(294));  // and the other way
  EXPECT_FALSE(a.is_used(294));
  *b.at<uint64_t>(1) = 42;
  EXPECT_EQ(*a.at<uint64_t>(1), 42u);
  EXPECT_EQ(a.count_used(), b.count_used());
  EXPECT_FALSE(a.find_next_used(288)) << "287 and 294 were the last used; 294 is free now";
  EXPECT_EQ(b.find_next_used(281), 287u);
  b.detach();
  EXPECT_EQ(*a.at<uint64_t>(1), 42u) << "detaching one attachment leaves the other intact";
}

TEST(FbArrayShare, ForkedChildSeesAndWritesTheSameElements) {
  TempDir dir;
  auto a = FbArray::create(dir.path(), "fork", 1000, sizeof(uint64_t), ProcessId::random());
  for (uint32_t i = 0; i < 1000; i += 10) {
    *a.at<uint64_t>(i) = i * i;
    a.set_used(i);
  }
  pid_t pid = fork_child([&] {
    auto c = FbArray::attach(dir.path(), "fork");
    if (c.count_used() != 100) return 1;
    for (uint32_t i = 0; i < 1000; i += 10)
      if (!c.is_used(i) || *c.at<uint64_t>(i) != uint64_t(i) * i) return 2;
    for (uint32_t i = 5; i < 1000; i += 10) {
      *c.at<uint64_t>(i) = ~uint64_t(i);
      c.set_used(i);
    }
    c.set_free(0);
    return 0;
  });
  ASSERT_EQ(wait_exit(pid), 0);
  EXPECT_EQ(a.count_used(), 199u);
  EXPECT_FALSE(a.is_used(0));
  for (uint32_t i = 5; i < 1000; i += 10) {
    EXPECT_TRUE(a.is_used(i));
    EXPECT_EQ(*a.at<uint64_t>(i), ~uint64_t(i));
  }
}

TEST(FbArrayShare, ConcurrentProcessesSettingBitsOfTheSameWordsLoseNothing) {
  TempDir dir;
  constexpr uint32_t kLen = 4000;
  constexpr int kProcs = 4, kRounds = 20;
  auto a = FbArray::create(dir.path(), "race", kLen, 4, ProcessId::random());
  // Each process owns indices i % kProcs == k: every word is shared by all of them.
  std::vector<pid_t> pids;
  for (int k = 0; k < kProcs; ++k) {
    pids.push_back(fork_child([&, k] {
      auto c = FbArray::attach(dir.path(), "race");
      for (int round = 0; round < kRounds; ++round) {
        for (uint32_t i = static_cast<uint32_t>(k); i < kLen; i += kProcs)
          if (c.set_used(i)) return 1;  // nobody else touches my bits
        for (uint32_t i = static_cast<uint32_t>(k); i < kLen; i += kProcs)
          if (!c.set_free(i)) return 2;
      }
      for (uint32_t i = static_cast<uint32_t>(k); i < kLen; i += kProcs) c.set_used(i);
      return 0;
    }));
  }
  for (pid_t p : pids) EXPECT_EQ(wait_exit(p), 0) << "a process saw one of its bits changed by another";
  EXPECT_EQ(a.count_used(), kLen);
  EXPECT_FALSE(a.find_next_free(0));
}

// ---- locking ----

TEST(FbArrayLocking, CreateWhileAttachedInThisProcessIsBusy) {
  TempDir dir;
  auto a = FbArray::create(dir.path(), "mine", 64, 8, ProcessId::random());
  a.set_used(3);
  auto e = expect_error([&] { FbArray::create(dir.path(), "mine", 64, 8, ProcessId::random()); }, "re-create");
  EXPECT_EQ(e.code(), Errc::busy);
  EXPECT_TRUE(contains(e.what(), a.path())) << e.what();
  EXPECT_EQ(e.path(), a.path());
  EXPECT_TRUE(a.is_used(3)) << "a refused create must not wipe the array";
  EXPECT_EQ(a.count_used(), 1u);
  e = expect_error([&] { FbArray::destroy(dir.path(), "mine"); }, "destroy");
  EXPECT_EQ(e.code(), Errc::busy);
  EXPECT_TRUE(os::path_exists(a.path()));
}

TEST(FbArrayLocking, AnotherProcessHoldingItBlocksCreateAndDestroyUntilKilled) {
  TempDir dir;
  auto creator = ProcessId::random();
  Pipe ready;
  pid_t holder = spawn_holder(dir.path(), "held", ready, 500, creator);
  ASSERT_TRUE(ready.wait());
  {
    // Attaching beside a holder is what shared locks are for.
    auto mine = FbArray::attach(dir.path(), "held");
    EXPECT_EQ(mine.creator(), creator);
    EXPECT_EQ(mine.len(), 500u);
    mine.set_used(17);
  }
  for (int what = 0; what < 2; ++what) {
    auto e = expect_error(
        [&] {
          if (what == 0) FbArray::create(dir.path(), "held", 500, 8, ProcessId::random());
          else FbArray::destroy(dir.path(), "held");
        },
        what ? "destroy while held" : "create while held");
    EXPECT_EQ(e.code(), Errc::busy) << e.what();
    EXPECT_TRUE(contains(e.what(), dir.path() + "/held")) << e.what();
    EXPECT_TRUE(contains(e.what(), creator.short_hex())) << e.what();
  }
  {
    auto still = FbArray::attach(dir.path(), "held");
    EXPECT_TRUE(still.is_used(17)) << "a refused create must not wipe the array";
  }
  kill_and_reap(holder);
  auto fresh = FbArray::create(dir.path(), "held", 500, 8, ProcessId::random());
  EXPECT_FALSE(fresh.is_used(17));
  fresh.destroy();
  EXPECT_FALSE(os::path_exists(dir.path() + "/held"));
}

TEST(FbArrayLocking, OurOwnAttachmentKeepsItBusyAfterTheOtherHolderDies) {
  TempDir dir;
  { FbArray::create(dir.path(), "both", 64, 8, ProcessId::random()); }
  Pipe ready;
  pid_t holder = spawn_holder(dir.path(), "both", ready);
  ASSERT_TRUE(ready.wait());
  auto mine = FbArray::attach(dir.path(), "both");
  kill_and_reap(holder);
  EXPECT_EQ(expect_error([&] { FbArray::destroy(dir.path(), "both"); }, "destroy").code(), Errc::busy);
  // Member destroy detaches first, then removes: nobody else is left.
  mine.destroy();
  EXPECT_FALSE(mine.valid());
  EXPECT_FALSE(os::path_exists(dir.path() + "/both"));
}

TEST(FbArrayLocking, MemberDestroyWhileOthersAttachedThrowsBusyButDetaches) {
  TempDir dir;
  auto a = FbArray::create(dir.path(), "shared", 64, 8, ProcessId::random());
  auto b = FbArray::attach(dir.path(), "shared");
  b.set_used(1);
  auto e = expect_error([&] { a.destroy(); }, "destroy while b attached");
  EXPECT_EQ(e.code(), Errc::busy);
  EXPECT_FALSE(a.valid());
  EXPECT_TRUE(os::path_exists(dir.path() + "/shared"));
  EXPECT_TRUE(b.is_used(1));
  b.destroy();
  EXPECT_FALSE(os::path_exists(dir.path() + "/shared"));
}

TEST(FbArrayLocking, HolderThatExitsNormallyReleasesIt) {
  TempDir dir;
  { FbArray::create(dir.path(), "brief", 64, 8, ProcessId::random()); }
  pid_t pid = fork_child([&] {
    auto c = FbArray::attach(dir.path(), "brief");
    c.set_used(9);
    return 0;  // _exit without detach: the kernel drops the lock
  });
  ASSERT_EQ(wait_exit(pid), 0);
  EXPECT_TRUE(FbArray::destroy(dir.path(), "brief"));
}

TEST(FbArrayLocking, AttachWhileTheCreatorIsInitialisingIsBusy) {
  TempDir dir;
  { FbArray::create(dir.path(), "init", 64, 8, ProcessId::random()); }
  // A creator in the middle of create() holds the exclusive lock.
  const std::string path = dir.path() + "/init";
  Pipe ready;
  pid_t creator = fork_child([&]() -> int {
    os::Fd fd = os::open_file(path, O_RDWR);
    if (!os::try_lock(fd.get(), os::LockKind::exclusive, path)) return 1;
    ready.signal();
    for (;;) pause();
  });
  ASSERT_TRUE(ready.wait());
  auto e = expect_error([&] { FbArray::attach(dir.path(), "init"); }, "attach during init");
  EXPECT_EQ(e.code(), Errc::busy);
  EXPECT_TRUE(contains(e.what(), path)) << e.what();
  kill_and_reap(creator);
  EXPECT_NO_THROW(FbArray::attach(dir.path(), "init"));
}

// ---- damaged files ----

class FbArrayDamage : public testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/dmg";
    auto a = FbArray::create(dir_.path(), "dmg", 1000, 8, ProcessId::random());
    a.set_used(10);
  }
  template <class T>
  void poke(off_t off, T value) {
    int fd = open(path_.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, &value, sizeof value, off), static_cast<ssize_t>(sizeof value));
    close(fd);
  }
  template <class T>
  T peek(off_t off) {
    T v{};
    int fd = open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(pread(fd, &v, sizeof v, off), static_cast<ssize_t>(sizeof v));
    close(fd);
    return v;
  }
  void expect_refused(Errc code, const std::string& why, const char* in_message = nullptr) {
    try {
      FbArray::attach(dir_.path(), "dmg");
      ADD_FAILURE() << "attached a file with " << why;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << why << ": " << e.what();
      EXPECT_TRUE(contains(e.what(), path_)) << why << ": " << e.what();
      EXPECT_EQ(e.path(), path_) << why;
      if (in_message) {
        EXPECT_TRUE(contains(e.what(), in_message)) << why << ": " << e.what();
      }
    }
  }
  // Header offsets (see FbArray::Header): magic 0, version 8, header_size 12,
  // len 16, elt_size 20, data_offset 24, mask_offset 32, file_size 40,
  // count 48, initialized 52, creator 56.
  TempDir dir_;
  std::string path_;
};

TEST_F(FbArrayDamage, IntactFileAttaches) {
  auto a = FbArray::attach(dir_.path(), "dmg");
  EXPECT_TRUE(a.is_used(10));
  EXPECT_EQ(peek<uint32_t>(16), 1000u) << "the header layout this test assumes";
  EXPECT_EQ(peek<uint32_t>(20), 8u);
  EXPECT_EQ(peek<uint32_t>(52), 1u);
}

TEST_F(FbArrayDamage, MissingFileIsNotFound) {
  ASSERT_EQ(unlink(path_.c_str()), 0);
  expect_refused(Errc::not_found, "no file");
}

TEST_F(FbArrayDamage, BadMagic) {
  poke<uint64_t>(0, 0x1122334455667788ull);
  expect_refused(Errc::corrupt, "bad magic", "magic");
}

TEST_F(FbArrayDamage, WrongVersionOrHeaderSize) {
  uint32_t v = peek<uint32_t>(8);
  poke<uint32_t>(8, v + 1);
  expect_refused(Errc::version_mismatch, "newer version", "version");
  poke<uint32_t>(8, 0);
  expect_refused(Errc::version_mismatch, "version 0");
  poke<uint32_t>(8, v);
  uint32_t hs = peek<uint32_t>(12);
  poke<uint32_t>(12, hs + 8);
  expect_refused(Errc::version_mismatch, "other header size");
  poke<uint32_t>(12, hs);
  EXPECT_NO_THROW(FbArray::attach(dir_.path(), "dmg"));
}

TEST_F(FbArrayDamage, SizesThatDoNotAddUp) {
  struct Field {
    off_t off;
    int width;
    uint64_t bad;
    const char* name;
  };
  const Field fields[] = {
      {16, 4, 0, "len 0"},          {16, 4, 1001, "len changed"},     {16, 4, 2000, "len doubled"},
      {20, 4, 0, "elt_size 0"},     {20, 4, 16, "elt_size changed"},  {24, 8, 0, "data_offset 0"},
      {24, 8, 64, "data_offset"},   {32, 8, 8192, "mask_offset"},     {32, 8, 0, "mask_offset 0"},
      {40, 8, 4096, "file_size"},   {40, 8, ~0ull, "file_size huge"},
  };
  for (const auto& f : fields) {
    SCOPED_TRACE(f.name);
    uint64_t saved = f.width == 4 ? peek<uint32_t>(f.off) : peek<uint64_t>(f.off);
    if (f.width == 4) poke<uint32_t>(f.off, static_cast<uint32_t>(f.bad));
    else poke<uint64_t>(f.off, f.bad);
    expect_refused(Errc::corrupt, f.name);
    if (f.width == 4) poke<uint32_t>(f.off, static_cast<uint32_t>(saved));
    else poke<uint64_t>(f.off, saved);
  }
  EXPECT_NO_THROW(FbArray::attach(dir_.path(), "dmg")) << "every field restored";
}

TEST_F(FbArrayDamage, ConsistentHeaderForAFileMuchLargerThanTheRealOne) {
  // A header whose offsets agree with a huge len, on a small file: must be
  // refused by size, never mapped (touching past EOF would be SIGBUS).
  const uint32_t len = 1u << 30, elt = 64;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  auto up = [](uint64_t v, uint64_t a) { return (v + a - 1) / a * a; };
  uint64_t data = 128, mask = up(data + uint64_t(len) * elt, 64), size = up(mask + (uint64_t(len) + 63) / 64 * 8, page);
  poke<uint32_t>(16, len);
  poke<uint32_t>(20, elt);
  poke<uint64_t>(24, data);
  poke<uint64_t>(32, mask);
  poke<uint64_t>(40, size);
  expect_refused(Errc::corrupt, "a header claiming 64 GiB on a small file", "truncated");
}

TEST_F(FbArrayDamage, NeverFinishedInitialising) {
  poke<uint32_t>(52, 0);
  expect_refused(Errc::corrupt, "initialized == 0");
}

TEST_F(FbArrayDamage, TruncatedFiles) {
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  for (off_t size : {off_t(st.st_size - 1), off_t(4096 + 1), off_t(100), off_t(72), off_t(71), off_t(8), off_t(0)}) {
    if (size >= st.st_size) continue;
    SCOPED_TRACE(size);
    ASSERT_EQ(truncate(path_.c_str(), size), 0);
    expect_refused(Errc::corrupt, "truncated to " + std::to_string(size), "truncated");
  }
}

TEST_F(FbArrayDamage, EmptyFileLeftByACrashedCreator) {
  ASSERT_EQ(unlink(path_.c_str()), 0);
  int fd = open(path_.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  expect_refused(Errc::corrupt, "an empty file");
  // A primary re-creates it.
  EXPECT_NO_THROW(FbArray::create(dir_.path(), "dmg", 10, 8, ProcessId::random()));
}

TEST_F(FbArrayDamage, DamagedFilesCanBeRecreatedAndDestroyed) {
  poke<uint64_t>(0, 0);
  expect_refused(Errc::corrupt, "bad magic");
  EXPECT_TRUE(FbArray::destroy(dir_.path(), "dmg")) << "a corrupt file nobody uses can be removed";
  auto a = FbArray::create(dir_.path(), "dmg", 1000, 8, ProcessId::random());
  EXPECT_EQ(a.count_used(), 0u);
}

}  // namespace
}  // namespace mpod
