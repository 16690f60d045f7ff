// Mailbox: lanes (order, wrap-around, full), lane claims and take-over from
// dead owners, the ready bitmap (draining, fairness, lost and spurious flags,
// sparseness), the doorbell handshake, reply boxes and their generations,
// refusal of damaged files, a lane between two real processes, and many
// lanes against one receiver from several threads.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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

// A distinct owner tag for every k.
ProcessId id(uint32_t k) {
  ProcessId p;
  p.bytes.fill(uint8_t(k));
  std::memcpy(p.bytes.data() + 8, &k, sizeof k);
  return p;
}

using Got = std::vector<std::pair<int, std::string>>;

// One receiver pass: what Mailbox::drain handed over, lane by lane.
Got drain_once(Mailbox& m, uint32_t& cursor) {
  Got got;
  uint8_t buf[kSlotData];
  m.drain(cursor, buf, [&](int lane, std::span<const uint8_t> b) {
    got.emplace_back(lane, std::string(reinterpret_cast<const char*>(b.data()), b.size()));
  });
  return got;
}

std::string read_all(const std::string& path) {
  os::Fd fd = os::open_file(path, O_RDONLY);
  std::string bytes(size_t(lseek(fd.get(), 0, SEEK_END)), '\0');
  EXPECT_EQ(pread(fd.get(), bytes.data(), bytes.size(), 0), ssize_t(bytes.size()));
  return bytes;
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
  // Scribble a huge length into the next slot by hand: its length word is 8 bytes before its text.
  const std::string text = "find this slot";
  ASSERT_TRUE(push_text(*peer, 1, text));
  const size_t at = read_all(path).find(text);
  ASSERT_NE(at, std::string::npos);
  os::Fd fd = os::open_file(path, O_RDWR);
  const uint32_t huge = 0xffffff;
  ASSERT_EQ(pwrite(fd.get(), &huge, 4, off_t(at - 8)), 4);
  uint8_t buf[kSlotData];
  EXPECT_EQ(owner->pop(1, buf), int(kSlotData));
}

TEST(Mailbox, LanesAreClaimedOncePerSenderAndTakenOverOnlyFromTheDead) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "c.mbox");
  std::set<uint64_t> dead;
  auto is_dead = [&](uint64_t tag) { return dead.count(tag) > 0; };
  std::set<int> lanes;
  for (uint32_t k = 1; k <= kLanes; ++k) {
    int lane = m->claim_lane(id(k), is_dead);
    ASSERT_GE(lane, 0) << "sender " << k;
    ASSERT_LT(lane, int(kLanes));
    EXPECT_TRUE(lanes.insert(lane).second) << "lane " << lane << " given twice";
    EXPECT_EQ(m->lane_owner(lane), owner_tag(id(k)));
  }
  EXPECT_EQ(lanes.size(), size_t(kLanes));
  for (uint32_t k : {5u, 1000u, kLanes})
    EXPECT_EQ(m->claim_lane(id(k), is_dead), *std::next(lanes.begin(), k - 1)) << "an owner gets its own lane back";
  const uint32_t newcomer = kLanes + 1;
  EXPECT_EQ(m->claim_lane(id(newcomer), is_dead), -1) << "every lane is held by a live sender";
  // Sender 10 died with a message still queued: the newcomer takes its lane
  // and the queued message is still delivered, in order, before its own.
  const int lane10 = m->claim_lane(id(10), is_dead);
  ASSERT_TRUE(push_text(*m, lane10, "last words"));
  dead.insert(owner_tag(id(10)));
  EXPECT_EQ(m->claim_lane(id(newcomer), is_dead), lane10);
  ASSERT_TRUE(push_text(*m, lane10, "newcomer"));
  EXPECT_EQ(pop_text(*m, lane10), "last words");
  EXPECT_EQ(pop_text(*m, lane10), "newcomer");
  // A clean exit gives the lane back.
  m->release_lane(lane10, id(10));  // not the owner any more: no effect
  EXPECT_EQ(m->lane_owner(lane10), owner_tag(id(newcomer)));
  m->release_lane(lane10, id(newcomer));
  EXPECT_EQ(m->lane_owner(lane10), 0u);
  EXPECT_EQ(m->claim_lane(id(newcomer + 1), is_dead), lane10);
}

TEST(Mailbox, DoorbellIsRungOnceAndOnlyForASleeper) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "d.mbox");
  ASSERT_TRUE(push_text(*m, 0, "awake"));
  EXPECT_FALSE(m->take_doorbell()) << "nobody sleeps";
  EXPECT_FALSE(m->prepare_to_sleep()) << "a queued message must keep the receiver up";
  EXPECT_FALSE(m->take_doorbell());
  uint32_t cursor = 0;
  EXPECT_EQ(drain_once(*m, cursor), (Got{{0, "awake"}}));
  EXPECT_TRUE(m->prepare_to_sleep());
  ASSERT_TRUE(push_text(*m, 2, "wake up"));
  EXPECT_TRUE(m->take_doorbell());
  EXPECT_FALSE(m->take_doorbell()) << "only one sender rings";
  m->woke_up();
  EXPECT_FALSE(m->take_doorbell());
}

TEST(Mailbox, AMessageOnAHighLaneIsSeenByItsFlagAlone) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "h.mbox");
  uint32_t cursor = 0;  // the one lane drain looks at unflagged is lane 0, which nobody owns
  EXPECT_FALSE(m->any_lane_has_data());
  ASSERT_TRUE(push_text(*m, 1000, "from lane 1000"));
  EXPECT_TRUE(m->any_lane_has_data());
  EXPECT_FALSE(m->prepare_to_sleep()) << "the receiver must stay up for lane 1000";
  EXPECT_FALSE(m->take_doorbell()) << "prepare_to_sleep lowered the flag again";
  EXPECT_EQ(drain_once(*m, cursor), (Got{{1000, "from lane 1000"}}));
  EXPECT_FALSE(m->any_lane_has_data()) << "the flag was taken with the message";
  EXPECT_TRUE(m->prepare_to_sleep());
  ASSERT_TRUE(push_text(*m, kLanes - 1, "last lane"));
  EXPECT_TRUE(m->take_doorbell()) << "the sleeper is rung";
  m->woke_up();
  EXPECT_EQ(drain_once(*m, cursor), (Got{{int(kLanes) - 1, "last lane"}}));
}

TEST(Mailbox, ABusyLaneGetsOneLapPerPassAndDoesNotStarveTheOthers) {
  TempDir dir;
  const std::string path = dir.path() + "/i.mbox";
  auto m = Mailbox::create(open_dir(dir), name_of(path));
  const int busy = 7, quiet = 900;  // the busy lane's word is served first in the first pass
  int next = 0;                     // the busy lane's next message number
  const std::string clean = read_all(path).substr(0, 4096);
  ASSERT_TRUE(push_text(*m, busy, std::to_string(next++)));
  // Where the busy lane's flag is: the one word of the header page its push changed.
  const std::string flagged = read_all(path).substr(0, 4096);
  const auto changed = std::mismatch(clean.begin(), clean.end(), flagged.begin()).first;
  const size_t flag_at = size_t(changed - clean.begin()) / 8 * 8;
  ASSERT_LT(flag_at, clean.size());
  os::Fd fd = os::open_file(path, O_RDWR);
  for (uint32_t i = 1; i < kSlots; ++i) ASSERT_TRUE(push_text(*m, busy, std::to_string(next++)));
  ASSERT_TRUE(push_text(*m, quiet, "quiet"));
  // Its sender refills the busy lane as fast as the receiver empties it, and
  // the refills' flags are wiped: the lane stays on the list by the
  // receiver's own flagging of a lane it left non-empty.
  uint32_t cursor = 0;
  int want = 0;
  for (int pass = 0; pass < 3; ++pass) {
    Got got;
    uint8_t buf[kSlotData];
    m->drain(cursor, buf, [&](int lane, std::span<const uint8_t> b) {
      got.emplace_back(lane, std::string(reinterpret_cast<const char*>(b.data()), b.size()));
      if (lane == busy) {
        ASSERT_TRUE(push_text(*m, busy, std::to_string(next++)));
        const uint64_t zero = 0;
        ASSERT_EQ(pwrite(fd.get(), &zero, 8, off_t(flag_at)), 8);
      }
    });
    size_t from_busy = 0;
    for (auto& [lane, text] : got) {
      if (lane != busy) continue;
      ++from_busy;
      EXPECT_EQ(text, std::to_string(want++)) << "order within the lane";
    }
    EXPECT_EQ(from_busy, size_t(kSlots)) << "one lap per pass, pass " << pass;
    EXPECT_EQ(got.size() - from_busy, pass == 0 ? 1u : 0u) << "the quiet lane is served in the first pass";
    EXPECT_TRUE(m->lane_has_data(busy));
    EXPECT_FALSE(m->prepare_to_sleep()) << "a lane left non-empty stays flagged";
  }
}

TEST(Mailbox, LanesAHandlerDidNotReachStayFlagged) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "j.mbox");
  for (int lane : {5, 6, 7, 600})
    for (int k = 0; k < 2; ++k) ASSERT_TRUE(push_text(*m, lane, std::to_string(lane) + "/" + std::to_string(k)));
  uint32_t cursor = 0;
  std::vector<std::string> seen;
  uint8_t buf[kSlotData];
  auto keep = [&](int, std::span<const uint8_t> b) {
    seen.emplace_back(reinterpret_cast<const char*>(b.data()), b.size());
  };
  EXPECT_THROW(m->drain(cursor, buf,
                        [&](int lane, std::span<const uint8_t> b) {
                          keep(lane, b);
                          if (lane == 5) throw std::runtime_error("handler failed");
                        }),
               std::runtime_error);
  EXPECT_EQ(seen, std::vector<std::string>{"5/0"});
  EXPECT_FALSE(m->prepare_to_sleep());
  EXPECT_EQ(m->drain(cursor, buf, keep), 7u) << "everything left, in one pass";
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()),
            (std::set<std::string>{"5/0", "5/1", "6/0", "6/1", "7/0", "7/1", "600/0", "600/1"}));
  EXPECT_EQ(seen.size(), 8u) << "none twice";
  EXPECT_TRUE(m->prepare_to_sleep());
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
  bool wrong = false;
  uint32_t cursor = 0;
  uint8_t buf[kSlotData];
  while (next < kCount && !wrong) {
    const size_t got = m->drain(cursor, buf, [&](int, std::span<const uint8_t> b) {
      std::string s(reinterpret_cast<const char*>(b.data()), b.size());
      std::string want = std::to_string(next) + ":" + std::string(size_t(next % 300), char('a' + next % 26));
      if (s != want) {
        ADD_FAILURE() << "message " << next << ": got '" << s << "'";
        wrong = true;
      }
      ++next;
    });
    if (got == 0) os::spin_pause(0);
  }
  if (wrong) kill(child, SIGKILL);  // it may wait for room forever
  int st = 0;
  waitpid(child, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(Mailbox, AMessageWhoseFlagWasLostIsFoundWithinOneRoundOfTheCursor) {
  TempDir dir;
  const std::string path = dir.path() + "/k.mbox";
  auto m = Mailbox::create(open_dir(dir), name_of(path));
  int lane = -1;
  for (uint32_t k = 1; k <= 1001; ++k) lane = m->claim_lane(id(k), [](uint64_t) { return false; });
  ASSERT_EQ(lane, 1000);
  // Its sender dies between publishing the message and flagging the lane:
  // put back the header page as it was before the push.
  const std::string before = read_all(path).substr(0, 4096);
  ASSERT_TRUE(push_text(*m, lane, "orphan"));
  ASSERT_NE(read_all(path).substr(0, 4096), before) << "the flag is in the header page";
  {
    os::Fd fd = os::open_file(path, O_RDWR);
    ASSERT_EQ(pwrite(fd.get(), before.data(), before.size(), 0), ssize_t(before.size()));
  }
  EXPECT_FALSE(m->any_lane_has_data());
  uint32_t cursor = 0;
  Got got;
  uint32_t passes = 0;
  while (passes < kLanes && got.empty()) {
    got = drain_once(*m, cursor);
    ++passes;
  }
  EXPECT_EQ(got, (Got{{1000, "orphan"}}));
  EXPECT_GT(passes, 1u) << "found by the cursor, not by a flag";
  for (uint32_t i = 0; i < kLanes; ++i) ASSERT_TRUE(drain_once(*m, cursor).empty()) << "delivered twice";
}

TEST(Mailbox, SpuriousFlagsCostOnePassAndNothingElse) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "l.mbox");
  uint8_t buf[kSlotData];
  // Every lane flagged, every lane empty again: as if the flags were garbage.
  for (uint32_t lane = 0; lane < kLanes; ++lane) {
    ASSERT_TRUE(push_text(*m, int(lane), "x"));
    ASSERT_EQ(m->pop(int(lane), buf), 1);
  }
  EXPECT_TRUE(m->any_lane_has_data());
  EXPECT_FALSE(m->prepare_to_sleep());
  uint32_t cursor = 0;
  EXPECT_TRUE(drain_once(*m, cursor).empty());
  EXPECT_FALSE(m->any_lane_has_data());
  EXPECT_TRUE(m->prepare_to_sleep());
}

// A mailbox on tmpfs (where runtime directories are; there even reading a
// hole allocates a page), and how many bytes of it have storage.
class MailboxOnTmpfs : public testing::Test {
 protected:
  void SetUp() override {
    struct stat shm {};
    if (stat("/dev/shm", &shm) != 0 || !S_ISDIR(shm.st_mode) || access("/dev/shm", W_OK) != 0)
      GTEST_SKIP() << "no /dev/shm to write in";
    dir_.emplace("/dev/shm");
    path_ = dir_->path() + "/m.mbox";
    m_ = Mailbox::create(open_dir(*dir_), name_of(path_));
    // Backed at create: the header, owner and ends tables and reply boxes,
    // so that a full filesystem later is no SIGBUS; the lanes' slots are not.
    ASSERT_GE(resident(), fixed_);
    if (resident() > fixed_ + 16 * 4096) GTEST_SKIP() << "this tmpfs allocates huge pages";
  }
  size_t resident() const {
    struct stat st {};
    EXPECT_EQ(stat(path_.c_str(), &st), 0);
    return size_t(st.st_blocks) * 512;
  }
  std::optional<TempDir> dir_;
  std::string path_;
  MailboxPtr m_;
  const size_t fixed_ = Mailbox::backed_at_create();
};

// A sender backs the lane it claimed (ChannelImpl::link_to), so a full
// filesystem is found then, and the socket used, not a SIGBUS on a write.
TEST_F(MailboxOnTmpfs, AClaimedLaneIsBackedWholeAndOthersNot) {
  const std::string& path = path_;
  const TempDir& dir = *dir_;
  const size_t fixed = fixed_;
  EXPECT_EQ(resident(), fixed);
  auto peer = Mailbox::open(open_dir(dir), name_of(path));
  ASSERT_TRUE(peer);
  const int lane = peer->claim_lane(id(7), [](uint64_t) { return false; });
  ASSERT_GE(lane, 0);
  EXPECT_TRUE(peer->back_lane(lane));
  EXPECT_EQ(resident(), fixed + size_t(kSlots) * kSlotSize);
  // The file replaced under the same name: not the one mapped, not backed.
  ASSERT_EQ(::rename(path.c_str(), (path + ".old").c_str()), 0);
  { std::ofstream(path) << "x"; }
  EXPECT_FALSE(peer->back_lane(lane));
}

TEST_F(MailboxOnTmpfs, AnUntouchedLaneCostsNoMemory) {
  const std::string& path = path_;
  const TempDir& dir = *dir_;
  const size_t fixed = fixed_;
  auto& m = m_;
  // Every sender claims its lane; one sends a message, the receiver takes it and goes to sleep.
  auto peer = Mailbox::open(open_dir(dir), name_of(path));
  ASSERT_TRUE(peer);
  for (uint32_t k = 1; k <= kLanes; ++k) ASSERT_EQ(peer->claim_lane(id(k), [](uint64_t) { return false; }), int(k - 1));
  ASSERT_TRUE(push_text(*peer, 1000, "hello"));
  EXPECT_FALSE(m->prepare_to_sleep());
  uint32_t cursor = 0;
  EXPECT_EQ(drain_once(*m, cursor), (Got{{1000, "hello"}}));
  EXPECT_TRUE(m->prepare_to_sleep());
  m->woke_up();
  // Beyond what create backed, lane 1000's first slot page alone. A look
  // at every lane's slots would cost 2048 pages.
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_LE(resident(), fixed + 4096u) << "of a file of " << st.st_size << " bytes";
}

TEST(Mailbox, ManyLanesFromSeveralThreadsDeliverEveryMessageOnceInOrder) {
  TempDir dir;
  auto m = Mailbox::create(open_dir(dir), "n.mbox");
  constexpr uint32_t kThreads = 4, kPerLane = 40;
  constexpr uint32_t kLanesEach = kLanes / kThreads;
  for (uint32_t k = 1; k <= kLanes; ++k) ASSERT_EQ(m->claim_lane(id(k), [](uint64_t) { return false; }), int(k - 1));
  std::atomic<bool> abandon{false};  // the receiver failed: producers stop waiting for room
  // The doorbell: a counter the producers raise when take_doorbell says the receiver sleeps.
  std::mutex mu;
  std::condition_variable rung;
  uint64_t doorbells = 0;
  std::vector<std::thread> producers;
  for (uint32_t t = 0; t < kThreads; ++t)
    producers.emplace_back([&, t] {
      // Thread t owns lanes t, t + kThreads, ...: every word of the bitmap has lanes of every thread.
      std::vector<uint32_t> sent(kLanesEach, 0);
      for (uint32_t done = 0; done < kLanesEach && !abandon.load();) {
        bool pushed = false;
        for (uint32_t j = 0; j < kLanesEach; ++j) {
          const int lane = int(t + j * kThreads);
          if (sent[j] == kPerLane || !push_text(*m, lane, std::to_string(lane) + ":" + std::to_string(sent[j])))
            continue;
          pushed = true;
          if (++sent[j] == kPerLane) ++done;
          if (m->take_doorbell()) {
            std::lock_guard g(mu);
            ++doorbells;
            rung.notify_one();
          }
        }
        if (!pushed) std::this_thread::yield();  // all its lanes full: the receiver is behind
      }
    });
  std::vector<uint32_t> next(kLanes, 0);
  uint64_t received = 0;
  uint32_t cursor = 0;
  uint8_t buf[kSlotData];
  while (received < uint64_t(kLanes) * kPerLane) {
    const size_t n = m->drain(cursor, buf, [&](int lane, std::span<const uint8_t> b) {
      const std::string s(reinterpret_cast<const char*>(b.data()), b.size());
      const std::string want = std::to_string(lane) + ":" + std::to_string(next[size_t(lane)]++);
      if (s != want) ADD_FAILURE() << "lane " << lane << ": got '" << s << "', want '" << want << "'";
      ++received;
    });
    if (n > 0) continue;
    std::unique_lock lk(mu);
    const uint64_t seen = doorbells;  // before the flag goes up: a ring after it counts
    lk.unlock();
    if (!m->prepare_to_sleep()) continue;
    lk.lock();
    // No timing in the protocol: the bound only turns a lost wake-up into a failure instead of a hang.
    if (!rung.wait_for(lk, std::chrono::seconds(60), [&] { return doorbells != seen; })) {
      ADD_FAILURE() << "asleep with " << received << " messages received and nobody rang";
      abandon = true;
      break;
    }
    lk.unlock();
    m->woke_up();
  }
  for (auto& p : producers) p.join();
  if (abandon) return;
  EXPECT_EQ(received, uint64_t(kLanes) * kPerLane);
  for (uint32_t lane = 0; lane < kLanes; ++lane) ASSERT_EQ(next[lane], kPerLane) << "lane " << lane;
  EXPECT_TRUE(drain_once(*m, cursor).empty()) << "nothing twice";
  EXPECT_TRUE(m->prepare_to_sleep());
}

}  // namespace
}  // namespace mpod::mailbox
