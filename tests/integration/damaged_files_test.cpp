// What a damaged file in the runtime directory may cost: its owner at most.
// Every other process either steps around it or fails at once with an error
// that names the file, never waits on it or floods the log.
#include <chrono>
#include <fstream>
#include <sstream>

#include "domain_fixture.hpp"

namespace mpod::test {
namespace {

using std::chrono::seconds;

size_t count_lines_with(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += contains(line, word);
  return n;
}

class DamagedFilesTest : public DomainTest {};

// The primary's registration is overwritten with junk while it runs. A
// secondary used to wait 30 s for a primary that "did not finish starting",
// logging the same warning every 5 ms (about 5,800 lines).
TEST_F(DamagedFilesTest, DamagedPrimaryRegistrationFailsASecondaryAtOnceNamingTheFile) {
  Child primary = start_primary();
  const auto regs = files_in(domain_dir() + "/procs");
  ASSERT_EQ(regs.size(), 1u) << "expected only the primary's registration";
  const std::string reg = domain_dir() + "/procs/" + regs[0];
  std::ofstream(reg, std::ios::trunc) << "not a registration\n";

  auto r = proc("attach", {"--no-huge"});
  r.insert(r.begin() + 2, "--proc-type=secondary");
  const auto t0 = std::chrono::steady_clock::now();
  const RunResult s = run(r, {}, seconds(20));
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_NE(s.code, -1) << "the secondary was still waiting after 20 s:\n" << s.output.substr(0, 2000);
  EXPECT_NE(s.code, 0) << s.output;
  EXPECT_LT(s.code, 128) << "it should fail with an error, not a signal:\n" << s.output;
  EXPECT_TRUE(contains(s.output, reg)) << "the error should name " << reg << ":\n" << s.output.substr(0, 2000);
  EXPECT_TRUE(contains(s.output, "damaged")) << s.output.substr(0, 2000);
  EXPECT_LE(count_lines_with(s.output, "WARNING"), 1u) << s.output.substr(0, 2000);
  // "At once": it read the file once and gave up, where it used to wait for
  // the 30 s start-up grace. 10 s leaves room for a loaded machine.
  EXPECT_LT(took, seconds(10)) << s.output.substr(0, 2000);
  EXPECT_TRUE(primary.running()) << "the damaged file may cost its owner at most, and it did not even do that";
}

}  // namespace
}  // namespace mpod::test
