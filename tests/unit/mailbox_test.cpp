// Mailbox: lanes (order, wrap-around, full), lane claims and take-over from
// dead owners, the doorbell handshake, reply boxes and their generations,
// refusal of damaged files, and a lane between two real processes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>

#include "src/ipc/mailbox.hpp"
#include "src/os/dir.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod::mailbox {
namespace {

using test::TempDir;

bool push_text(Mailbox& m, int lane, const std::string& s) {
  const os::Part p{s.data(), s.size()};
  return m.push(lane, {&p, 1});
}

std::string pop_text(Mailbox& m, int lane) {
  uint8_t buf[kSlotData];
  int n = m.pop(lane, buf);
  return n < 0 ? "<empty>" : std::string(reinterpret_cast<char*>(buf), size_t(n));
}

os::Dir open_dir(const TempDir& dir) { return os::Dir::open(dir.path(), os::DirRule::joined()); }
std::string name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

ProcessId id(uint8_t k) {
  ProcessId p;
  p.bytes.fill(k);
  return p;
}

TEST(Mailbox, LaneKeepsOrderWrapsAroundAndRefusesWhenFull) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "a.mbox");
  EXPECT_EQ(pop_text(*m, 3), "<empty>");
  for (int round = 0; round < 5; ++round) {
    for (uint32_t i = 0; i < kSlots; ++i) ASSERT_TRUE(push_text(*m, 3, "r" + std::to_string(round) + "m" + std::to_string(i)));
    EXPECT_FALSE(m->has_room(3));
    EXPECT_FALSE(push_text(*m, 3, "one too many"));
    EXPECT_TRUE(m->lane_has_data(3));
    EXPECT_FALSE(m->lane_has_data(4));
    for (uint32_t i = 0; i < kSlots; ++i) EXPECT_EQ(pop_text(*m, 3), "r" + std::to_string(round) + "m" + std::to_string(i));
    EXPECT_EQ(pop_text(*m, 3), "<empty>");
    EXPECT_TRUE(m->has_room(3));
  }
  // A full slot's worth round-trips; the length word can never point past the slot.
  std::string big(kSlotData, 'z');
  ASSERT_TRUE(push_text(*m, 0, big));
  EXPECT_EQ(pop_text(*m, 0), big);
}

TEST(Mailbox, APeerSeesTheSameLanesAndADamagedLengthStaysInsideTheSlot) {
  TempDir dir;
  const std::string path = dir.path() + "/b.mbox";
  auto owner = Mailbox::create(open_dir(dir), name_of(path));
  auto peer = Mailbox::open(open_dir(dir), name_of(path));
  ASSERT_TRUE(peer);
  ASSERT_TRUE(push_text(*peer, 1, "from the peer"));
  EXPECT_EQ(pop_text(*owner, 1), "from the peer");
  // Scribble a huge length into the next slot by hand.
  ASSERT_TRUE(push_text(*peer, 1, "x"));
  os::Fd fd = os::open_file(path, O_RDWR);
  const size_t lane1_slot1 = 4096 + (64 * 3 + size_t(kSlots) * kSlotSize) * 1 + 64 * 3 + kSlotSize * 1;
  const uint32_t huge = 0xffffff;
  ASSERT_EQ(pwrite(fd.get(), &huge, 4, off_t(lane1_slot1)), 4);
  uint8_t buf[kSlotData];
  EXPECT_EQ(owner->pop(1, buf), int(kSlotData));
}

TEST(Mailbox, LanesAreClaimedOncePerSenderAndTakenOverOnlyFromTheDead) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "c.mbox");
  std::set<uint64_t> dead;
  auto is_dead = [&](uint64_t tag) { return dead.count(tag) > 0; };
  std::set<int> lanes;
  for (uint32_t k = 0; k < kLanes; ++k) {
    int lane = m->claim_lane(id(uint8_t(k + 1)), is_dead);
    ASSERT_GE(lane, 0);
    EXPECT_TRUE(lanes.insert(lane).second) << "lane " << lane << " given twice";
    EXPECT_EQ(m->lane_owner(lane), owner_tag(id(uint8_t(k + 1))));
  }
  EXPECT_EQ(m->claim_lane(id(uint8_t(5)), is_dead), *std::next(lanes.begin(), 4)) << "an owner gets its own lane back";
  EXPECT_EQ(m->claim_lane(id(200), is_dead), -1) << "every lane is held by a live sender";
  // Sender 10 died with a message still queued: the newcomer takes its lane
  // and the queued message is still delivered, in order, before its own.
  const int lane10 = m->claim_lane(id(10), is_dead);
  ASSERT_TRUE(push_text(*m, lane10, "last words"));
  dead.insert(owner_tag(id(10)));
  EXPECT_EQ(m->claim_lane(id(200), is_dead), lane10);
  ASSERT_TRUE(push_text(*m, lane10, "newcomer"));
  EXPECT_EQ(pop_text(*m, lane10), "last words");
  EXPECT_EQ(pop_text(*m, lane10), "newcomer");
  // A clean exit gives the lane back.
  m->release_lane(lane10, id(10));  // not the owner any more: no effect
  EXPECT_EQ(m->lane_owner(lane10), owner_tag(id(200)));
  m->release_lane(lane10, id(200));
  EXPECT_EQ(m->lane_owner(lane10), 0u);
  EXPECT_EQ(m->claim_lane(id(201), is_dead), lane10);
}

TEST(Mailbox, DoorbellIsRungOnceAndOnlyForASleeper) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "d.mbox");
  ASSERT_TRUE(push_text(*m, 0, "awake"));
  EXPECT_FALSE(m->take_doorbell()) << "nobody sleeps";
  EXPECT_FALSE(m->prepare_to_sleep()) << "a queued message must keep the receiver up";
  EXPECT_FALSE(m->take_doorbell());
  pop_text(*m, 0);
  EXPECT_TRUE(m->prepare_to_sleep());
  ASSERT_TRUE(push_text(*m, 2, "wake up"));
  EXPECT_TRUE(m->take_doorbell());
  EXPECT_FALSE(m->take_doorbell()) << "only one sender rings";
  m->woke_up();
  EXPECT_FALSE(m->take_doorbell());
}

TEST(Mailbox, ReplyBoxTakesOnlyTheGenerationItWaitsFor) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "e.mbox");
  const std::string reply = "the answer";
  const os::Part part{reply.data(), reply.size()};
  m->box_state(7).store((41u << 2) | box_waiting);
  EXPECT_FALSE(m->fill_box(7, 40, {&part, 1})) << "a late reply to an earlier request";
  EXPECT_FALSE(m->fill_box(kBoxes, 41, {&part, 1})) << "no such box";
  std::string too_big(kBoxData + 1, 'b');
  const os::Part big{too_big.data(), too_big.size()};
  EXPECT_FALSE(m->fill_box(7, 41, {&big, 1}));
  ASSERT_TRUE(m->fill_box(7, 41, {&part, 1}));
  EXPECT_EQ(m->box_state(7).load(), (41u << 2) | box_ready);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(m->box_data(7)), m->box_len(7)), reply);
  EXPECT_FALSE(m->fill_box(7, 41, {&part, 1})) << "answered once only";
}

TEST(Mailbox, MissingUnfinishedOrForeignFilesAreRefused) {
  TempDir dir;
  EXPECT_EQ(Mailbox::open(open_dir(dir), "none.mbox"), nullptr);
  const std::string path = dir.path() + "/f.mbox";
  { auto m = Mailbox::create(open_dir(dir), name_of(path)); }
  // Magic not yet written: its owner is still creating it.
  os::Fd fd = os::open_file(path, O_RDWR);
  const uint32_t zero = 0;
  ASSERT_EQ(pwrite(fd.get(), &zero, 4, 0), 4);
  EXPECT_EQ(Mailbox::open(open_dir(dir), name_of(path)), nullptr);
  ASSERT_EQ(ftruncate(fd.get(), 4096), 0);
  try {
    Mailbox::open(open_dir(dir), name_of(path));
    ADD_FAILURE() << "a truncated mailbox was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::corrupt);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Mailbox, AnotherUidsMailboxIsLeftToTheSocketAndAPlantedLinkIsRefused) {
  TempDir dir;
  { auto m = Mailbox::create(open_dir(dir), "mine.mbox"); }
  struct stat st {};
  ASSERT_EQ(stat((dir.path() + "/mine.mbox").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "owner-only, whatever --group says";
  ASSERT_EQ(symlink((dir.path() + "/mine.mbox").c_str(), (dir.path() + "/link.mbox").c_str()), 0);
  try {
    Mailbox::open(open_dir(dir), "link.mbox");
    ADD_FAILURE() << "a symbolic link was followed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::untrusted) << e.what();
  }
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give a mailbox to another uid";
  ASSERT_EQ(chown((dir.path() + "/mine.mbox").c_str(), 65534, 65534), 0);
  EXPECT_EQ(Mailbox::open(open_dir(dir), "mine.mbox"), nullptr) << "another uid's mailbox is reached by socket only";
}

TEST(Mailbox, LaneBetweenTwoProcessesDeliversEveryMessageOnceInOrder) {
  TempDir dir;
  const std::string path = dir.path() + "/g.mbox";
  auto m = Mailbox::create(open_dir(dir), name_of(path));
  constexpr int kCount = 200000;
  pid_t child = fork();
  if (child == 0) {
    auto peer = Mailbox::open(open_dir(dir), name_of(path));
    int lane = peer->claim_lane(id(9), [](uint64_t) { return false; });
    for (int i = 0; i < kCount; ++i) {
      // Varying lengths, each message carrying its number and a checksum-able body.
      std::string s = std::to_string(i) + ":" + std::string(size_t(i % 300), char('a' + i % 26));
      while (!push_text(*peer, lane, s)) os::spin_pause(0);
    }
    _exit(0);
  }
  int next = 0;
  uint8_t buf[kSlotData];
  while (next < kCount) {
    bool got = false;
    for (uint32_t lane = 0; lane < kLanes; ++lane) {
      int n = m->pop(int(lane), buf);
      if (n < 0) continue;
      got = true;
      std::string s(reinterpret_cast<char*>(buf), size_t(n));
      std::string want = std::to_string(next) + ":" + std::string(size_t(next % 300), char('a' + next % 26));
      ASSERT_EQ(s, want) << "message " << next;
      ++next;
    }
    if (!got) os::spin_pause(0);
  }
  int st = 0;
  waitpid(child, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

}  // namespace
}  // namespace mpod::mailbox
