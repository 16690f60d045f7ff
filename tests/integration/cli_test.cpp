// The channel from the command line: mpod ping from a pod to mpod serve, its
// summary, its failure without a primary; mpod info's channel state.
#include <regex>

#include "domain_fixture.hpp"

namespace mpod::test {
namespace {

class CliTest : public DomainTest {};

TEST_F(CliTest, PingFromAPodPrintsEachRoundTripAndASummary) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child serve = Child::spawn(mpod("serve", {"--no-huge"}));
  ASSERT_TRUE(serve.wait_for_output("ready")) << serve.output();
  auto r = run(mpod("ping", {"--no-huge", "--count", "5", "--interval", "0.01"}), PodOptions{true, ""});
  ASSERT_EQ(r.code, 0) << r.output;
  for (int seq = 1; seq <= 5; ++seq)
    EXPECT_TRUE(std::regex_search(r.output, std::regex("reply from [0-9a-f]{8}: seq=" + std::to_string(seq) + " time=[0-9.]+ ms")))
        << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("5 requests, 5 replies, 0 failed; rtt min/p50/p99/max = "
                                                        "([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+) ms")))
      << r.output;
  EXPECT_LE(std::stod(m[1]), std::stod(m[2]));
  EXPECT_LE(std::stod(m[2]), std::stod(m[3]));
  EXPECT_LE(std::stod(m[3]), std::stod(m[4]));
}

TEST_F(CliTest, PingWithoutAPrimaryFailsAndSaysWhatToDo) {
  auto r = run(mpod("ping", {"--no-huge", "--count", "1"}));
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "no primary is running") && contains(r.output, "--wait-primary")) << r.output;
}

TEST_F(CliTest, InfoShowsEachProcessChannelState) {
  Child serve = Child::spawn(mpod("serve", {"--no-huge"}));
  ASSERT_TRUE(serve.wait_for_output("ready")) << serve.output();
  auto r = run(mpod("info", {"--json"}));
  ASSERT_EQ(r.code, 0) << r.output;
  // Both processes (serve and info itself) are bound and have a mailbox.
  const std::regex endpoint("\"bound\": ?true, ?\"mailbox\": ?\"[^\"]+\\.mbox\", ?\"has_mailbox\": ?true");
  EXPECT_EQ(std::distance(std::sregex_iterator(r.output.begin(), r.output.end(), endpoint), std::sregex_iterator()), 2)
      << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\"sent_by_mailbox\": ?[0-9]+"))) << r.output;
  auto text = run(mpod("info"));
  EXPECT_TRUE(contains(text.output, "sock+mbox")) << text.output;
}

}  // namespace
}  // namespace mpod::test
