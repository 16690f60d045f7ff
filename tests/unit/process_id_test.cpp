// ProcessId: random draws, the hex form and its parser, short_hex, role names.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>

#include "mpod/process.hpp"

namespace mpod {
namespace {

TEST(ProcessIdTest, DefaultIsEmptyAndRandomNeverIs) {
  ProcessId none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.hex(), std::string(32, '0'));
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(ProcessId::random().empty());
}

TEST(ProcessIdTest, ManyRandomDrawsAreDistinct) {
  std::set<std::string> seen;
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i) seen.insert(ProcessId::random().hex());
  EXPECT_EQ(seen.size(), static_cast<size_t>(kDraws));
  // Short forms are only for people, but 8 hex digits over 20000 draws should
  // rarely collide: more than a handful would mean the bytes are not random.
  std::set<std::string> shorts;
  for (auto& h : seen) shorts.insert(h.substr(0, 8));
  EXPECT_GE(shorts.size(), static_cast<size_t>(kDraws - 5));
}

TEST(ProcessIdTest, EveryByteVaries) {
  // A byte position stuck at one value (e.g. copied from a PID or left zero)
  // would show here: 500 draws of a random byte take far more than 100 values.
  std::set<uint8_t> values[16];
  for (int i = 0; i < 500; ++i) {
    auto id = ProcessId::random();
    for (int b = 0; b < 16; ++b) values[b].insert(id.bytes[b]);
  }
  for (int b = 0; b < 16; ++b) EXPECT_GT(values[b].size(), 100u) << "byte " << b;
}

TEST(ProcessIdTest, ForkedProcessesDrawDifferentIds) {
  // Children of one parent share its memory image; a PRNG seeded once before
  // fork would hand every child the same id.
  constexpr int kKids = 8;
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  for (int k = 0; k < kKids; ++k) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto id = ProcessId::random();
      _exit(write(p[1], id.bytes.data(), 16) == 16 ? 0 : 1);
    }
  }
  close(p[1]);
  std::set<std::string> ids;
  ProcessId id;
  while (read(p[0], id.bytes.data(), 16) == 16) ids.insert(id.hex());
  close(p[0]);
  for (int k = 0; k < kKids; ++k) {
    int st = 0;
    wait(&st);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kKids));
}

TEST(ProcessIdTest, HexIsLowercaseBigEndianByteOrder) {
  ProcessId id;
  for (int i = 0; i < 16; ++i) id.bytes[i] = static_cast<uint8_t>(i * 17);  // 00 11 22 .. ff
  EXPECT_EQ(id.hex(), "00112233445566778899aabbccddeeff");
  EXPECT_EQ(id.short_hex(), "00112233");
  id.bytes = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c};
  EXPECT_EQ(id.hex(), "deadbeef0102030405060708090a0b0c");
  EXPECT_EQ(id.short_hex(), "deadbeef");
}

TEST(ProcessIdTest, ParseRoundTrips) {
  for (int i = 0; i < 2000; ++i) {
    auto id = ProcessId::random();
    auto h = id.hex();
    ASSERT_EQ(h.size(), 32u);
    for (char c : h) ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << h;
    auto back = ProcessId::parse(h);
    ASSERT_TRUE(back.has_value()) << h;
    EXPECT_EQ(*back, id);
    EXPECT_EQ(back->hex(), h);
    EXPECT_EQ(id.short_hex(), h.substr(0, 8));
  }
  auto zero = ProcessId::parse(std::string(32, '0'));
  ASSERT_TRUE(zero);
  EXPECT_TRUE(zero->empty());
  auto ff = ProcessId::parse(std::string(32, 'f'));
  ASSERT_TRUE(ff);
  for (auto b : ff->bytes) EXPECT_EQ(b, 0xff);
}

TEST(ProcessIdTest, ParseRejectsAnythingElse) {
  const std::string good = "00112233445566778899aabbccddeeff";
  ASSERT_TRUE(ProcessId::parse(good));
  const std::string bad[] = {
      "",
      "0",
      good.substr(0, 31),
      good + "0",
      good.substr(0, 16),
      "00112233445566778899AABBCCDDEEFF",  // upper case: registration file names are lower case
      "00112233445566778899aabbccddeefg",
      "g0112233445566778899aabbccddeeff",
      "0x112233445566778899aabbccddeeff",
      " 0112233445566778899aabbccddeeff",
      "00112233445566778899aabbccddeef ",
      "0011223344556677-899aabbccddeeff",
      ".00112233445566778899aabbccddee",
      std::string("00112233445566778899aabbccddee\0f", 32),  // embedded NUL
      std::string(32, '/'),
      std::string(32, ':'),  // just past '9'
      std::string(32, '`'),  // just before 'a'
      std::string(64, 'a'),
  };
  for (const auto& s : bad) EXPECT_FALSE(ProcessId::parse(s).has_value()) << "'" << s << "'";
  // A registration's temporary name is not an id either.
  EXPECT_FALSE(ProcessId::parse("." + good + ".new"));
}

TEST(ProcessIdTest, EqualityIsByteWise) {
  auto a = ProcessId::random();
  auto b = a;
  EXPECT_EQ(a, b);
  b.bytes[15] ^= 1;
  EXPECT_FALSE(a == b);
  b = a;
  b.bytes[0] ^= 0x80;
  EXPECT_FALSE(a == b);
}

TEST(ProcessIdTest, RoleNames) {
  EXPECT_STREQ(role_name(Role::primary), "primary");
  EXPECT_STREQ(role_name(Role::secondary), "secondary");
}

}  // namespace
}  // namespace mpod
