// The multi-process channel between real processes, most of them PID 1 of
// their own pod: request/reply, broadcast, descriptor passing, timeouts,
// handler errors, peers that die before or during a request, many concurrent
// requests, and peer events.
#include <time.h>

#include <chrono>
#include <regex>
#include <thread>

#include "domain_fixture.hpp"

namespace mpod::test {
namespace {

using namespace std::chrono;

class ChannelTest : public DomainTest {
 protected:
  void SetUp() override {
    DomainTest::SetUp();
    primary_ = start_primary();
    primary_id_ = primary_.output().substr(primary_.output().find("id=") + 3, 32);
  }

  Child responder(int k, bool pod) {
    PodOptions opts;
    if (pod) opts = PodOptions{true, "pod-" + std::to_string(k)};
    Child c = Child::spawn(proc("responder", {"--no-huge"}), opts);
    EXPECT_TRUE(c.wait_for_output("RESPONDER")) << c.output();
    return c;
  }
  static std::string id_of(const Child& c) {
    auto out = c.output();
    return out.substr(out.find("id=") + 3, 32);
  }
  RunResult request(std::vector<std::string> args, PodOptions pod = {}) {
    return run(proc("requester", {"--no-huge"}, std::move(args)), pod);
  }
  static size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  }

  Child primary_;
  std::string primary_id_;
};

TEST_F(ChannelTest, RequestReplyBetweenPodsWhoseProcessesAreAllPid1) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child a = responder(0, true), b = responder(1, true);
  EXPECT_TRUE(contains(a.output(), "pid=1")) << a.output();
  EXPECT_TRUE(contains(b.output(), "pid=1")) << b.output();
  // The requester is PID 1 of a third pod.
  auto r = request({"--to=" + id_of(b), "--data=ping"}, PodOptions{true, "asker"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "REPLY from=" + id_of(b) + " data=echo:ping|pod-1|1")) << r.output;
  EXPECT_TRUE(contains(r.output, "DONE replies=1 failures=0")) << r.output;
}

TEST_F(ChannelTest, BroadcastToSixteenPods) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  std::vector<Child> pods;
  for (int k = 0; k < 16; ++k) pods.push_back(responder(k, true));
  auto r = request({"--to=all", "--data=all-hands", "--timeout=5000"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "DONE replies=17 failures=0")) << r.output;  // 16 pods + the primary
  for (int k = 0; k < 16; ++k)
    EXPECT_TRUE(contains(r.output, "REPLY from=" + id_of(pods[k]) + " data=echo:all-hands|pod-" + std::to_string(k) + "|1"))
        << "pod " << k << " missing:\n" << r.output;
}

TEST_F(ChannelTest, MemfdWrittenInOnePodIsReadInAnother) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child reader = responder(0, true);
  auto r = request({"--to=" + id_of(reader), "--action=fd-read", "--fd-text=written-by-the-asker"},
                   PodOptions{true, "writer"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "data=written-by-the-asker")) << r.output;
}

TEST_F(ChannelTest, TimeoutsHandlerErrorsAndUnknownActionsAreReportedPerPeer) {
  Child a = responder(0, false);
  auto t0 = steady_clock::now();
  auto slow = request({"--to=" + id_of(a), "--action=slow", "--timeout=250"});
  auto took = steady_clock::now() - t0;
  EXPECT_TRUE(contains(slow.output, "error=timed_out")) << slow.output;
  EXPECT_GE(took, milliseconds(250));
  EXPECT_LT(took, milliseconds(2000));

  auto boom = request({"--to=all", "--action=boom"});
  EXPECT_EQ(count(boom.output, "error=handler_failed detail=boom handler exploded"), 2u) << boom.output;
  auto none = request({"--to=all", "--action=no.such-action"});
  EXPECT_EQ(count(none.output, "error=no_handler detail=no handler for action 'no.such-action'"), 2u) << none.output;
  // The channel keeps serving everyone afterwards.
  auto ok = request({"--to=all", "--data=still"});
  EXPECT_TRUE(contains(ok.output, "DONE replies=2 failures=0")) << ok.output;
}

TEST_F(ChannelTest, DeadPeerIsReportedAtOnceNotAfterTheTimeout) {
  Child a = responder(0, false), b = responder(1, false);
  const std::string dead = id_of(a);
  a.signal(SIGKILL);
  a.wait();
  auto t0 = steady_clock::now();
  auto r = request({"--to=" + dead, "--timeout=10000"});
  EXPECT_LT(steady_clock::now() - t0, milliseconds(1500)) << "waited on a dead peer";
  EXPECT_TRUE(contains(r.output, "FAIL peer=" + dead + " error=dead")) << r.output;
  auto all = request({"--to=all", "--timeout=10000"});
  EXPECT_TRUE(contains(all.output, "REPLY from=" + id_of(b))) << all.output;
}

TEST_F(ChannelTest, PeerKilledInTheMiddleOfARequest) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child victim = responder(0, true);
  Child asker = Child::spawn(proc("requester", {"--no-huge"}, {"--to=" + id_of(victim), "--action=slow", "--timeout=20000"}));
  std::this_thread::sleep_for(milliseconds(300));  // the request is in the victim's (non-)handler now
  auto t0 = steady_clock::now();
  victim.signal(SIGKILL);
  ASSERT_EQ(asker.wait(seconds(10)), 0) << asker.output();
  EXPECT_LT(steady_clock::now() - t0, milliseconds(1500)) << "the requester waited out its timeout";
  EXPECT_TRUE(contains(asker.output(), "error=dead")) << asker.output();
}

TEST_F(ChannelTest, ThousandConcurrentRequestsAllMatched) {
  Child a = responder(0, false);
  std::vector<Child> askers;
  // 4 processes x 4 threads x 64 requests: two processes ask the responder, two the primary.
  for (int p = 0; p < 4; ++p) {
    std::string to = p < 2 ? id_of(a) : primary_id_;
    askers.push_back(Child::spawn(proc("requester", {"--no-huge"}, {"--to=" + to, "--threads=4", "--count=64", "--timeout=10000"})));
  }
  for (auto& c : askers) {
    EXPECT_EQ(c.wait(seconds(60)), 0) << c.output();
    EXPECT_TRUE(contains(c.output(), "MATCHED 256 WRONG 0")) << c.output();
  }
}

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

TEST_F(ChannelTest, PrimaryLearnsOfAttachAndOfSigkillWithin100ms) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child a = responder(0, true);
  const std::string id = id_of(a);
  ASSERT_TRUE(primary_.wait_for_output("EVENT attached " + id, seconds(2))) << primary_.output();
  const uint64_t killed_at = monotonic_ns();
  a.signal(SIGKILL);
  ASSERT_TRUE(primary_.wait_for_output("EVENT crashed " + id, seconds(2))) << primary_.output();
  std::smatch m;
  std::string out = primary_.output();
  ASSERT_TRUE(std::regex_search(out, m, std::regex("EVENT crashed " + id + " t=([0-9]+)")));
  const uint64_t seen_at = std::stoull(m[1]);
  EXPECT_LT(seen_at - killed_at, 100'000'000u) << "took " << (seen_at - killed_at) / 1e6 << " ms";
}

}  // namespace
}  // namespace mpod::test

namespace mpod::test {
namespace {

TEST_F(ChannelTest, OneSendersMessagesArriveInOrderWhateverPathEachTakes) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child a = responder(0, true);
  // 300 messages: small ones through the mailbox, 20 KB and 64 KiB ones by
  // socket behind a marker, every 7th with a memfd (by socket too). Two
  // senders at once.
  auto r1 = Child::spawn(proc("requester", {"--no-huge"}, {"--to=" + id_of(a), "--sequence=300", "--timeout=10000"}),
                         PodOptions{true, "sender-1"});
  auto r2 = request({"--to=" + id_of(a), "--sequence=300", "--timeout=10000"}, PodOptions{true, "sender-2"});
  ASSERT_EQ(r2.code, 0) << r2.output;
  ASSERT_EQ(r1.wait(seconds(60)), 0) << r1.output();
  for (const std::string& out : {r1.output(), r2.output}) {
    EXPECT_TRUE(contains(out, "data=received=300 out_of_order=0 bad_fd=0")) << out;
    EXPECT_TRUE(std::regex_search(out, std::regex("by_mailbox=[1-9]"))) << "the fast path was not used:\n" << out;
  }
}

TEST_F(ChannelTest, WithoutItsMailboxAPeerIsStillReachedBySocket) {
  Child a = responder(0, false);
  auto r = request({"--to=" + id_of(a), "--data=via-socket", "--drop-mailbox"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "data=echo:via-socket|")) << r.output;
  EXPECT_TRUE(contains(r.output, "by_mailbox=0")) << r.output;
  auto fast = request({"--to=" + primary_id_, "--data=fast"});
  EXPECT_TRUE(contains(fast.output, "data=echo:fast|")) << fast.output;
  EXPECT_TRUE(std::regex_search(fast.output, std::regex("by_mailbox=[1-9]"))) << fast.output;
}

TEST_F(ChannelTest, APeerThatStopsReadingFillsUpAndTheSenderIsToldWhileOthersAreServed) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child stuck = responder(0, true);
  auto r = request({"--to=" + id_of(stuck), "--stall=4000"}, PodOptions{true, "flooder"});
  ASSERT_EQ(r.code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("FULL after ([0-9]+) sends in ([0-9]+) ms: (.*)"))) << r.output;
  EXPECT_LT(std::stoi(m[1]), 100) << "a stalled peer should fill up after a bounded number of messages";
  EXPECT_LT(std::stoi(m[2]), 2000) << "each send waits at most its 200 ms timeout";
  EXPECT_TRUE(contains(m[3], id_of(stuck).substr(0, 8)) && contains(m[3], "not reading its channel")) << m[3];
  EXPECT_TRUE(contains(r.output, "REPLY from=" + primary_id_ + " data=echo:still-there|")) << r.output;
  // Once it reads again, it serves requests as before.
  auto again = request({"--to=" + id_of(stuck), "--data=back", "--timeout=10000"});
  EXPECT_TRUE(contains(again.output, "data=echo:back|pod-0|1")) << again.output;
}

}  // namespace
}  // namespace mpod::test
