// The pure checks a secondary makes of files other processes (perhaps a
// hostile group member) can write, before it maps anything:
// check_fbarray_header on an fbarray's first bytes, and check_config /
// layout_problem on the shared config. Each refusal is tested as the hostile
// member would make it: the config's checksum recomputed after the change,
// so the layout checks themselves are what refuses it.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include "mpod/error.hpp"
#include "mpod/fbarray.hpp"
#include "mpod/process.hpp"
#include "src/lifecycle/shared_config.hpp"
#include "src/memory/fbarray_header.hpp"
#include "src/memory/shared_memory.hpp"
#include "src/os/os.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod {
namespace {

using test::TempDir;

// ====================== fbarray header ======================

// The header as src/memory/fbarray.cpp lays it out (struct FbArray::Header).
struct FbHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_size;
  uint32_t len;
  uint32_t elt_size;
  uint64_t data_offset;
  uint64_t mask_offset;
  uint64_t file_size;
  uint32_t count;
  uint32_t initialized;
  uint8_t creator[16];
};
static_assert(sizeof(FbHeader) == 72);

constexpr uint64_t kFbMagic = 0x5241424650444f4dull;  // "MODPFBAR" little-endian

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Sets the offsets and size a sound file of h.len x h.elt_size has.
void set_geometry(FbHeader& h) {
  h.data_offset = 128;
  h.mask_offset = align_up(128 + uint64_t(h.len) * h.elt_size, 64);
  h.file_size = align_up(h.mask_offset + (uint64_t(h.len) + 63) / 64 * 8, os::system_page_size());
}

FbHeader built_header(uint32_t len, uint32_t elt_size) {
  FbHeader h{};
  h.magic = kFbMagic;
  h.version = 1;
  h.header_size = 72;
  h.len = len;
  h.elt_size = elt_size;
  set_geometry(h);
  h.count = 0;
  h.initialized = 1;
  return h;
}

HeaderCheck check(const FbHeader& h, uint64_t file_size, size_t len = sizeof(FbHeader)) {
  return check_fbarray_header(&h, len, file_size);
}

// A header written by FbArray::create itself, and the file's size.
struct RealHeader {
  FbHeader h{};
  uint64_t file_size = 0;
};
RealHeader real_header(const TempDir& t, uint32_t len, uint32_t elt_size) {
  RealHeader r;
  FbArray a = FbArray::create(t.path(), "fb", len, elt_size, ProcessId::random());
  a.set_used(0);
  a.set_used(len - 1);
  int fd = ::open((t.path() + "/fb").c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, &r.h, sizeof r.h, 0), ssize_t(sizeof r.h));
  struct stat st;
  EXPECT_EQ(::fstat(fd, &st), 0);
  r.file_size = uint64_t(st.st_size);
  ::close(fd);
  return r;
}

#define EXPECT_FB_REFUSED(header, file_size, expected_code)                                  \
  do {                                                                                       \
    const HeaderCheck r_ = check((header), (file_size));                                     \
    EXPECT_FALSE(r_.why.empty()) << "accepted: " #header;                                    \
    EXPECT_EQ(r_.code, (expected_code)) << r_.why;                                           \
  } while (0)

TEST(SharedChecksFbArray, RealHeaderHasTheDocumentedLayout) {
  TempDir t;
  const RealHeader r = real_header(t, 1000, 24);
  const FbHeader want = built_header(1000, 24);
  EXPECT_EQ(r.h.magic, kFbMagic);
  EXPECT_EQ(r.h.version, 1u);
  EXPECT_EQ(r.h.header_size, 72u);
  EXPECT_EQ(r.h.len, 1000u);
  EXPECT_EQ(r.h.elt_size, 24u);
  EXPECT_EQ(r.h.data_offset, 128u);
  EXPECT_EQ(r.h.mask_offset, want.mask_offset);
  EXPECT_EQ(r.h.file_size, want.file_size);
  EXPECT_EQ(r.h.file_size, r.file_size);
  EXPECT_EQ(r.h.count, 2u);
  EXPECT_EQ(r.h.initialized, 1u);
}

TEST(SharedChecksFbArray, SoundHeaderPasses) {
  TempDir t;
  const RealHeader r = real_header(t, 1000, 24);
  HeaderCheck c = check(r.h, r.file_size);
  EXPECT_TRUE(c.why.empty()) << c.why;
  // A file longer than the header says is fine.
  c = check(r.h, r.file_size + 4096);
  EXPECT_TRUE(c.why.empty()) << c.why;
  // Built by hand, the same.
  for (uint32_t len : {1u, 63u, 64u, 65u, 1000u, 4096u}) {
    for (uint32_t elt : {1u, 8u, 32u, 352u, kMaxEltSize}) {
      FbHeader h = built_header(len, elt);
      c = check(h, h.file_size);
      EXPECT_TRUE(c.why.empty()) << len << " x " << elt << ": " << c.why;
    }
  }
  // All elements in use.
  FbHeader h = built_header(64, 8);
  h.count = 64;
  c = check(h, h.file_size);
  EXPECT_TRUE(c.why.empty()) << c.why;
}

TEST(SharedChecksFbArray, LargestGeometryDoesNotOverflow) {
  FbHeader h = built_header(UINT32_MAX, kMaxEltSize);
  EXPECT_GT(h.file_size, uint64_t(UINT32_MAX) * kMaxEltSize);
  HeaderCheck c = check(h, h.file_size);
  EXPECT_TRUE(c.why.empty()) << c.why;
  EXPECT_FB_REFUSED(h, h.file_size - 1, Errc::corrupt);
}

TEST(SharedChecksFbArray, BadMagic) {
  TempDir t;
  RealHeader r = real_header(t, 100, 8);
  r.h.magic ^= 1;
  EXPECT_FB_REFUSED(r.h, r.file_size, Errc::corrupt);
  r.h.magic = 0;
  EXPECT_FB_REFUSED(r.h, r.file_size, Errc::corrupt);
}

TEST(SharedChecksFbArray, OtherVersionIsVersionMismatch) {
  TempDir t;
  RealHeader r = real_header(t, 100, 8);
  FbHeader h = r.h;
  h.version = 2;
  EXPECT_FB_REFUSED(h, r.file_size, Errc::version_mismatch);
  h.version = 0;
  EXPECT_FB_REFUSED(h, r.file_size, Errc::version_mismatch);
  h = r.h;
  h.header_size = 80;
  EXPECT_FB_REFUSED(h, r.file_size, Errc::version_mismatch);
}

TEST(SharedChecksFbArray, ZeroOrOversizedElements) {
  // Geometry recomputed for each, so only the size itself is wrong.
  FbHeader h = built_header(100, 8);
  h.len = 0;
  set_geometry(h);
  EXPECT_FB_REFUSED(h, h.file_size, Errc::corrupt);
  h = built_header(100, 8);
  h.elt_size = 0;
  set_geometry(h);
  EXPECT_FB_REFUSED(h, h.file_size, Errc::corrupt);
  h = built_header(100, 8);
  h.elt_size = kMaxEltSize + 1;
  set_geometry(h);
  EXPECT_FB_REFUSED(h, h.file_size, Errc::corrupt);
  h = built_header(1, 8);
  h.elt_size = UINT32_MAX;
  set_geometry(h);
  EXPECT_FB_REFUSED(h, h.file_size, Errc::corrupt);
}

TEST(SharedChecksFbArray, InconsistentOffsets) {
  TempDir t;
  const RealHeader r = real_header(t, 1000, 24);
  FbHeader h = r.h;
  h.data_offset = 72;  // right after the header, not 64-aligned past it
  EXPECT_FB_REFUSED(h, r.file_size, Errc::corrupt);
  h = r.h;
  h.data_offset += 64;
  EXPECT_FB_REFUSED(h, r.file_size, Errc::corrupt);
  h = r.h;
  h.mask_offset -= 64;  // mask over the last elements
  EXPECT_FB_REFUSED(h, r.file_size, Errc::corrupt);
  h = r.h;
  h.mask_offset += 64;
  EXPECT_FB_REFUSED(h, r.file_size, Errc::corrupt);
  h = r.h;
  h.file_size -= os::system_page_size();
  EXPECT_FB_REFUSED(h, r.file_size, Errc::corrupt);
  h = r.h;
  h.file_size += os::system_page_size();
  EXPECT_FB_REFUSED(h, r.file_size + os::system_page_size(), Errc::corrupt);
  // len changed, offsets left: elements would run into the mask.
  h = r.h;
  h.len = 100000;
  EXPECT_FB_REFUSED(h, uint64_t(1) << 40, Errc::corrupt);
  h = r.h;
  h.elt_size = 4096;
  EXPECT_FB_REFUSED(h, uint64_t(1) << 40, Errc::corrupt);
}

TEST(SharedChecksFbArray, FileShorterThanHeaderSays) {
  TempDir t;
  const RealHeader r = real_header(t, 1000, 24);
  EXPECT_FB_REFUSED(r.h, r.file_size - 1, Errc::corrupt);
  EXPECT_FB_REFUSED(r.h, r.h.file_size - os::system_page_size(), Errc::corrupt);
  EXPECT_FB_REFUSED(r.h, 72, Errc::corrupt);
  EXPECT_FB_REFUSED(r.h, 71, Errc::corrupt);
  EXPECT_FB_REFUSED(r.h, 0, Errc::corrupt);
}

TEST(SharedChecksFbArray, NeverInitialised) {
  TempDir t;
  RealHeader r = real_header(t, 100, 8);
  r.h.initialized = 0;
  EXPECT_FB_REFUSED(r.h, r.file_size, Errc::corrupt);
  r.h.initialized = 2;
  EXPECT_FB_REFUSED(r.h, r.file_size, Errc::corrupt);
}

TEST(SharedChecksFbArray, CountAboveLen) {
  FbHeader h = built_header(100, 8);
  h.count = 101;
  EXPECT_FB_REFUSED(h, h.file_size, Errc::corrupt);
  h.count = UINT32_MAX;
  EXPECT_FB_REFUSED(h, h.file_size, Errc::corrupt);
}

TEST(SharedChecksFbArray, ShortBuffer) {
  const FbHeader h = built_header(100, 8);
  for (size_t len : {size_t(0), size_t(1), size_t(8), size_t(71)}) {
    const HeaderCheck c = check(h, h.file_size, len);
    EXPECT_FALSE(c.why.empty()) << "a " << len << "-byte buffer was accepted";
    EXPECT_EQ(c.code, Errc::corrupt) << c.why;
  }
  // A longer buffer is fine: only the first 72 bytes are the header.
  unsigned char big[200] = {};
  std::memcpy(big, &h, sizeof h);
  const HeaderCheck c = check_fbarray_header(big, sizeof big, h.file_size);
  EXPECT_TRUE(c.why.empty()) << c.why;
}

TEST(SharedChecksFbArray, UnalignedBufferIsFine) {
  const FbHeader h = built_header(100, 8);
  unsigned char buf[sizeof h + 1];
  std::memcpy(buf + 1, &h, sizeof h);
  const HeaderCheck c = check_fbarray_header(buf + 1, sizeof h, h.file_size);
  EXPECT_TRUE(c.why.empty()) << c.why;
}

// ====================== shared config ======================

constexpr uint64_t kBase = 0x200000000000ull;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kUserTop = 0x800000000000ull;

void set_name(char* field, size_t cap, const std::string& s) {
  std::memset(field, 0, cap);
  std::memcpy(field, s.data(), std::min(s.size(), cap));
}

MemsegListLayout& list0(SharedConfig& c) { return c.memory.lists[0]; }

void fill_list(MemsegListLayout& l, uint64_t base_va, int index) {
  l.page_size = os::system_page_size();
  l.seg_size = 2 * kMiB;
  l.base_va = base_va;
  l.capacity = 2048;
  l.hugepages = 0;
  set_name(l.fbarray_name, sizeof l.fbarray_name, "fbarray_memseg-4k-0-" + std::to_string(index));
  set_name(l.backing_name, sizeof l.backing_name, "map_" + std::to_string(index));
  set_name(l.backing_dir, sizeof l.backing_dir, "/x");
}

// A config a primary could have written: one list of 2048 x 2 MiB filling 4 GiB.
std::unique_ptr<SharedConfig> make_config() {
  auto c = std::make_unique<SharedConfig>();
  c->header.magic = SharedConfig::kMagic;
  c->header.version = SharedConfig::kVersion;
  c->header.layout_size = sizeof(SharedConfig);
  c->header.base_va = kBase;
  c->header.va_len = 4 * kGiB;
  c->memory.n_lists = 1;
  fill_list(list0(*c), kBase, 0);
  c->header.checksum = config_checksum(*c);
  return c;
}

HeaderCheck check(const SharedConfig& c, size_t len = sizeof(SharedConfig)) { return check_config(&c, len); }

// Changes the config as a hostile member would (checksum recomputed) and
// expects layout_problem and check_config to refuse it.
void expect_config_refused(const std::function<void(SharedConfig&)>& change, const std::string& what) {
  SCOPED_TRACE(what);
  auto c = make_config();
  change(*c);
  const std::string why = layout_problem(c->memory, c->header.base_va, c->header.va_len);
  EXPECT_FALSE(why.empty()) << "layout_problem accepted: " << what;
  c->header.checksum = config_checksum(*c);
  const HeaderCheck r = check(*c);
  EXPECT_FALSE(r.why.empty()) << "check_config accepted: " << what;
  EXPECT_EQ(r.code, Errc::corrupt) << r.why;
  if (!why.empty()) {
    EXPECT_EQ(r.why, why) << "check_config should report the layout's problem";
  }
}

TEST(SharedChecksConfig, SoundConfigPasses) {
  auto c = make_config();
  EXPECT_EQ(layout_problem(c->memory, kBase, 4 * kGiB), "");
  const HeaderCheck r = check(*c);
  EXPECT_TRUE(r.why.empty()) << r.why;
  // Fields outside the checksum (changing at run time) do not matter.
  c->memory.generation.store(7);
  c->header.ready.store(1);
  EXPECT_TRUE(check(*c).why.empty());
}

TEST(SharedChecksConfig, TwoListsInOrderPass) {
  auto c = make_config();
  c->header.va_len = 8 * kGiB;
  c->memory.n_lists = 2;
  fill_list(c->memory.lists[1], kBase + 4 * kGiB, 1);
  c->header.checksum = config_checksum(*c);
  const HeaderCheck r = check(*c);
  EXPECT_TRUE(r.why.empty()) << r.why;
  // A range ending exactly at the top of the user half is fine too.
  auto top = make_config();
  top->header.base_va = kUserTop - 4 * kGiB;
  list0(*top).base_va = top->header.base_va;
  top->header.checksum = config_checksum(*top);
  EXPECT_TRUE(check(*top).why.empty()) << check(*top).why;
}

TEST(SharedChecksConfig, BadSharedRange) {
  const uint64_t page = os::system_page_size();
  expect_config_refused([](SharedConfig& c) { c.header.base_va = 0; }, "base_va 0");
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.base_va = 0;
        list0(c).base_va = 0;
      },
      "base_va 0 with the list at 0");
  expect_config_refused([](SharedConfig& c) { c.header.base_va = kBase + 1; }, "unaligned base");
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.base_va = kBase + 1;
        list0(c).base_va = kBase + 1;
      },
      "unaligned base, list following it");
  expect_config_refused([](SharedConfig& c) { c.header.va_len = 4 * kGiB + 1; }, "unaligned length");
  expect_config_refused([](SharedConfig& c) { c.header.va_len = 0; }, "zero length");
  expect_config_refused([page](SharedConfig& c) { c.header.va_len = kUserTop - kBase + page; },
                        "range past the user half");
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.base_va = kUserTop;
        list0(c).base_va = kUserTop;
      },
      "base at the top of the user half");
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.base_va = 0xffff800000000000ull;
        list0(c).base_va = 0xffff800000000000ull;
      },
      "kernel half");
  expect_config_refused([page](SharedConfig& c) { c.header.va_len = ~uint64_t(0) - page + 1; },
                        "length overflowing");
  expect_config_refused([page](SharedConfig& c) { c.header.va_len = (~uint64_t(0) - kBase + 1 + page) & ~(page - 1); },
                        "base + length wrapping to a small value");
}

TEST(SharedChecksConfig, BadListCount) {
  expect_config_refused([](SharedConfig& c) { c.memory.n_lists = 0; }, "n_lists 0");
  expect_config_refused([](SharedConfig& c) { c.memory.n_lists = MemoryLayout::kMaxLists + 1; }, "n_lists 9");
  expect_config_refused([](SharedConfig& c) { c.memory.n_lists = UINT32_MAX; }, "n_lists huge");
  expect_config_refused([](SharedConfig& c) { c.memory.n_lists = 2; }, "n_lists 2, second list zeroed");
}

TEST(SharedChecksConfig, BadPageAndSegmentSizes) {
  const uint64_t page = os::system_page_size();
  expect_config_refused([](SharedConfig& c) { list0(c).page_size = 3; }, "page_size 3");
  expect_config_refused([](SharedConfig& c) { list0(c).page_size = 0; }, "page_size 0");
  expect_config_refused([page](SharedConfig& c) { list0(c).page_size = page * 3; }, "page_size 3 pages");
  expect_config_refused([page](SharedConfig& c) { list0(c).page_size = page / 2; }, "page_size below the system's");
  expect_config_refused(
      [](SharedConfig& c) {
        list0(c).page_size = 2 * kGiB;
        list0(c).seg_size = 2 * kGiB;
        list0(c).capacity = 1;
      },
      "page_size 2 GiB");
  expect_config_refused([page](SharedConfig& c) { list0(c).seg_size = page / 2; }, "seg_size < page_size");
  expect_config_refused(
      [](SharedConfig& c) {
        list0(c).page_size = 2 * kMiB;
        list0(c).seg_size = 1 * kMiB;
      },
      "seg_size < page_size (huge)");
  expect_config_refused([](SharedConfig& c) { list0(c).seg_size = 3 * kMiB; }, "seg_size not a power of two");
  expect_config_refused([](SharedConfig& c) { list0(c).seg_size = 0; }, "seg_size 0");
}

TEST(SharedChecksConfig, BadListPlacement) {
  const uint64_t page = os::system_page_size();
  expect_config_refused([](SharedConfig& c) { list0(c).base_va = kBase + 1; }, "list base unaligned");
  expect_config_refused(
      [page](SharedConfig& c) {
        list0(c).base_va = kBase - page;
      },
      "list base below the range");
  expect_config_refused([](SharedConfig& c) { list0(c).base_va = kBase + 4 * kGiB; }, "list base at the range end");
  expect_config_refused([page](SharedConfig& c) { list0(c).base_va = kBase + 4 * kGiB + page; },
                        "list base past the range");
  expect_config_refused([](SharedConfig& c) { list0(c).base_va = 0; }, "list base 0");
  expect_config_refused([](SharedConfig& c) { list0(c).capacity = 2049; }, "capacity * seg_size past the end");
  expect_config_refused([](SharedConfig& c) { list0(c).capacity = UINT32_MAX; }, "capacity huge");
  expect_config_refused(
      [](SharedConfig& c) {
        list0(c).capacity = UINT32_MAX;
        list0(c).seg_size = kGiB;
      },
      "capacity * seg_size near 2^62");
  expect_config_refused([](SharedConfig& c) { list0(c).capacity = 0; }, "capacity 0");
  expect_config_refused([page](SharedConfig& c) { list0(c).base_va = kBase + page; },
                        "list shifted by a page: its end passes the range");
  // Two lists overlapping, or out of order.
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.va_len = 8 * kGiB;
        c.memory.n_lists = 2;
        fill_list(c.memory.lists[1], kBase + 4 * kGiB - 2 * kMiB, 1);
      },
      "second list overlapping the first");
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.va_len = 8 * kGiB;
        c.memory.n_lists = 2;
        list0(c).base_va = kBase + 4 * kGiB;
        fill_list(c.memory.lists[1], kBase, 1);
      },
      "lists out of order");
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.va_len = 8 * kGiB;
        c.memory.n_lists = 2;
        fill_list(c.memory.lists[1], kBase, 1);
      },
      "two lists at the same address");
}

TEST(SharedChecksConfig, BadFbarrayName) {
  auto name = [](std::string s) {
    return [s](SharedConfig& c) { set_name(list0(c).fbarray_name, sizeof list0(c).fbarray_name, s); };
  };
  expect_config_refused(name("../x"), "fbarray_name ../x");
  expect_config_refused(name("a/b"), "fbarray_name a/b");
  expect_config_refused(name("fbarray_memseg-a/b"), "fbarray_name with a slash after the prefix");
  expect_config_refused(name("fbarray_memseg-/../../etc/x"), "fbarray_name walking out after the prefix");
  expect_config_refused(name(""), "fbarray_name empty");
  expect_config_refused(name(".."), "fbarray_name ..");
  expect_config_refused(name("fbarray_memse"), "fbarray_name a prefix of the prefix");
  expect_config_refused(name("memseg-4k-0-0"), "fbarray_name not starting with fbarray_memseg-");
  expect_config_refused(name("config"), "fbarray_name naming another domain file");
  expect_config_refused(
      [](SharedConfig& c) {
        auto& n = list0(c).fbarray_name;
        std::memset(n, 'x', sizeof n);
        std::memcpy(n, "fbarray_memseg-", 15);
      },
      "fbarray_name with no NUL in its 64 bytes");
}

TEST(SharedChecksConfig, BadBackingName) {
  auto name = [](std::string s) {
    return [s](SharedConfig& c) { set_name(list0(c).backing_name, sizeof list0(c).backing_name, s); };
  };
  expect_config_refused(name(".."), "backing_name ..");
  expect_config_refused(name("."), "backing_name .");
  expect_config_refused(name("a/b"), "backing_name a/b");
  expect_config_refused(name("/etc/shadow"), "backing_name absolute");
  expect_config_refused(name(""), "backing_name empty");
  expect_config_refused(
      [](SharedConfig& c) { std::memset(list0(c).backing_name, 'm', sizeof list0(c).backing_name); },
      "backing_name with no NUL in its 64 bytes");
  expect_config_refused(
      [](SharedConfig& c) { std::memset(list0(c).backing_dir, 'd', sizeof list0(c).backing_dir); },
      "backing_dir with no NUL in its 192 bytes");
}

TEST(SharedChecksConfig, BadPageKind) {
  expect_config_refused([](SharedConfig& c) { list0(c).hugepages = 2; }, "hugepages 2");
  expect_config_refused([](SharedConfig& c) { list0(c).hugepages = UINT32_MAX; }, "hugepages -1");
}

TEST(SharedChecksConfig, RefusalInALaterList) {
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.va_len = 8 * kGiB;
        c.memory.n_lists = 2;
        fill_list(c.memory.lists[1], kBase + 4 * kGiB, 1);
        set_name(c.memory.lists[1].backing_name, sizeof c.memory.lists[1].backing_name, "..");
      },
      "second list's backing_name ..");
  expect_config_refused(
      [](SharedConfig& c) {
        c.header.va_len = 8 * kGiB;
        c.memory.n_lists = 2;
        fill_list(c.memory.lists[1], kBase + 4 * kGiB, 1);
        c.memory.lists[1].capacity = 2049;
      },
      "second list past the end");
}

TEST(SharedChecksConfig, WrongChecksum) {
  auto c = make_config();
  c->header.checksum ^= 1;
  HeaderCheck r = check(*c);
  EXPECT_EQ(r.code, Errc::corrupt);
  EXPECT_NE(r.why.find("checksum"), std::string::npos) << r.why;
  // The checksum covers the header's range and every list: a change without
  // recomputing it is caught.
  c = make_config();
  c->header.base_va += 4096;
  r = check(*c);
  EXPECT_NE(r.why.find("checksum"), std::string::npos) << r.why;
  c = make_config();
  list0(*c).capacity = 1;
  r = check(*c);
  EXPECT_NE(r.why.find("checksum"), std::string::npos) << r.why;
  c = make_config();
  c->memory.lists[MemoryLayout::kMaxLists - 1].page_size = 1;
  r = check(*c);
  EXPECT_NE(r.why.find("checksum"), std::string::npos) << r.why;
  c = make_config();
  c->memory.n_lists = 2;
  r = check(*c);
  EXPECT_NE(r.why.find("checksum"), std::string::npos) << r.why;
}

TEST(SharedChecksConfig, TruncatedBuffer) {
  auto c = make_config();
  for (size_t len : {size_t(0), size_t(8), sizeof(ConfigHeader) - 1, sizeof(ConfigHeader),
                     sizeof(SharedConfig) - 1}) {
    const HeaderCheck r = check(*c, len);
    EXPECT_FALSE(r.why.empty()) << len << " bytes accepted";
    EXPECT_EQ(r.code, Errc::corrupt) << len << ": " << r.why;
  }
  // Longer than a config is no config either.
  auto big = std::make_unique<unsigned char[]>(sizeof(SharedConfig) + 64);
  std::memcpy(big.get(), c.get(), sizeof(SharedConfig));
  const HeaderCheck r = check_config(big.get(), sizeof(SharedConfig) + 64);
  EXPECT_FALSE(r.why.empty());
  EXPECT_EQ(r.code, Errc::corrupt) << r.why;
}

TEST(SharedChecksConfig, BadMagic) {
  auto c = make_config();
  c->header.magic ^= 0x100;
  c->header.checksum = config_checksum(*c);
  const HeaderCheck r = check(*c);
  EXPECT_FALSE(r.why.empty());
  EXPECT_EQ(r.code, Errc::corrupt) << r.why;
}

TEST(SharedChecksConfig, OtherVersionIsVersionMismatch) {
  auto c = make_config();
  c->header.version = SharedConfig::kVersion + 1;
  HeaderCheck r = check(*c);
  EXPECT_EQ(r.code, Errc::version_mismatch) << r.why;
  EXPECT_FALSE(r.why.empty());
  c->header.checksum = config_checksum(*c);
  r = check(*c);
  EXPECT_EQ(r.code, Errc::version_mismatch) << r.why;
  // A writer whose SharedConfig has another size is another version too.
  c = make_config();
  c->header.layout_size = sizeof(SharedConfig) + 8;
  c->header.checksum = config_checksum(*c);
  r = check(*c);
  EXPECT_EQ(r.code, Errc::version_mismatch) << r.why;
  EXPECT_FALSE(r.why.empty());
  // Even from a short buffer, the header alone tells the version.
  c = make_config();
  c->header.version = SharedConfig::kVersion + 1;
  r = check(*c, sizeof(ConfigHeader));
  EXPECT_EQ(r.code, Errc::version_mismatch) << r.why;
}

}  // namespace
}  // namespace mpod
