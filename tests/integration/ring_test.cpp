// Rings between processes in separate pods (PID 1 each): several producers
// and consumers, every mode, bulk and burst; every item is delivered exactly
// once (per-item counters in shared memory), intact (each record carries a
// checksum of itself) and in its producer's order.
#include <regex>

#include "domain_fixture.hpp"

namespace mpod::test {
namespace {

class RingAcrossPods : public DomainTest {
 protected:
  void run_mode(const std::string& ring, const std::string& prod, const std::string& cons, int producers,
                int consumers, bool burst) {
    MPOD_SKIP_UNLESS(cannot_make_pods());
    const int per = 100000;
    const std::string total = std::to_string(uint64_t(per) * producers);
    Child owner = Child::spawn(proc("primary", {"--no-huge", "-m", "32"},
                                    {"--make-ring=" + ring + ",1024," + prod + "," + cons, "--total=" + total}));
    ASSERT_TRUE(owner.wait_for_output("READY")) << owner.output();
    std::vector<Child> procs;
    std::vector<std::string> extra = {"--ring=" + ring, "--count=" + std::to_string(per), "--total=" + total};
    if (burst) extra.push_back("--burst");
    for (int c = 0; c < consumers; ++c)
      procs.push_back(Child::spawn(proc("ring-consumer", {"--no-huge"}, extra), PodOptions{true, "consumer"}));
    for (int p = 0; p < producers; ++p) {
      auto args = extra;
      args.push_back("--index=" + std::to_string(p));
      procs.push_back(Child::spawn(proc("ring-producer", {"--no-huge"}, args), PodOptions{true, "producer"}));
    }
    auto codes = wait_all(procs, std::chrono::seconds(180));
    uint64_t got = 0;
    for (size_t i = 0; i < procs.size(); ++i) {
      ASSERT_EQ(codes[i], 0) << procs[i].output();
      std::smatch m;
      std::string out = procs[i].output();
      if (i < size_t(consumers)) {
        ASSERT_TRUE(std::regex_search(out, m, std::regex("CONSUMER got=([0-9]+) dup=0 bad=0 disorder=0 pid=1\\b"))) << out;
        got += std::stoull(m[1]);
      } else {
        EXPECT_TRUE(contains(out, "sent=" + std::to_string(per))) << out;
      }
    }
    EXPECT_EQ(got, uint64_t(per) * producers) << "items taken by all consumers together";
    // mpod info lists it, empty again, in text and JSON.
    auto json = run(mpod("info", {"--no-huge", "--json"}));
    EXPECT_TRUE(std::regex_search(json.output, std::regex("\"rings\": ?\\[\\{\"name\": ?\"" + ring +
                                                          "\", ?\"capacity\": ?1024, ?\"count\": ?0, ?\"elem_size\": ?16\\}")))
        << json.output;
    auto text = run(mpod("info", {"--no-huge"}));
    EXPECT_TRUE(std::regex_search(text.output, std::regex(ring + " +1024 +0 +16"))) << text.output;
  }
};

TEST_F(RingAcrossPods, SingleProducerSingleConsumer) { run_mode("spsc", "sp", "sc", 1, 1, false); }
TEST_F(RingAcrossPods, MultiProducersSingleConsumerBurst) { run_mode("mpsc", "mp", "sc", 3, 1, true); }
TEST_F(RingAcrossPods, SingleProducerMultiConsumers) { run_mode("spmc", "sp", "mc", 1, 3, false); }
TEST_F(RingAcrossPods, MultiProducersMultiConsumers) { run_mode("mpmc", "mp", "mc", 3, 3, false); }
TEST_F(RingAcrossPods, MultiProducersMultiConsumersBurst) { run_mode("mpmcb", "mp", "mc", 3, 3, true); }

}  // namespace
}  // namespace mpod::test
