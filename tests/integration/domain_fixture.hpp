// A fixture for tests of one mpod domain: a fresh runtime directory, a file
// prefix unique to the test (hugetlbfs page files are named by prefix in a
// mount all tests share), and helpers to start primaries and secondaries.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/helpers/process_harness.hpp"

namespace mpod::test {

// The names in `dir`, sorted; none if it does not exist.
inline std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec)) out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

class DomainTest : public testing::Test {
 protected:
  void SetUp() override {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    prefix_ = std::string("t") + info->name();
    if (prefix_.size() > 40) prefix_.resize(40);
  }
  // The test's children are gone by now (their Child objects were destroyed,
  // SIGKILLing any still running): free the hugepages a killed primary kept.
  void TearDown() override { remove_dead_page_files(prefix_); }

  // --runtime-dir and --file-prefix for this test, plus `extra`.
  std::vector<std::string> domain_args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> a = {"--runtime-dir=" + dir_.path(), "--file-prefix=" + prefix_};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::string domain_dir() const { return dir_.path() + "/" + prefix_; }

  // mpod-test-proc MODE <domain args> <runtime> -- <mode args>
  std::vector<std::string> proc(const std::string& mode, std::vector<std::string> runtime = {},
                                std::vector<std::string> mode_args = {}) const {
    return helper("mpod-test-proc", mode, std::move(runtime), std::move(mode_args));
  }
  // Any helper program of the same shape: PROGRAM MODE <domain args> <runtime> -- <mode args>
  std::vector<std::string> helper(const std::string& program, const std::string& mode,
                                  std::vector<std::string> runtime = {}, std::vector<std::string> mode_args = {}) const {
    std::vector<std::string> a = {bin(program), mode};
    for (auto& x : domain_args(runtime)) a.push_back(x);
    if (!mode_args.empty()) {
      a.push_back("--");
      a.insert(a.end(), mode_args.begin(), mode_args.end());
    }
    return a;
  }
  std::vector<std::string> mpod(const std::string& cmd, std::vector<std::string> extra = {}) const {
    std::vector<std::string> a = {bin("mpod"), cmd};
    for (auto& x : domain_args(extra)) a.push_back(x);
    return a;
  }

  // Starts a primary (plain files unless `runtime` says otherwise) and waits until it is ready.
  Child start_primary(std::vector<std::string> runtime = {"--no-huge"}) {
    Child c = Child::spawn(proc("primary", runtime));
    EXPECT_TRUE(c.wait_for_output("READY")) << c.output();
    return c;
  }

  // A secondary that attaches and exits: {exit code, output}.
  RunResult attach_once(std::vector<std::string> runtime = {"--no-huge"}) {
    auto r = proc("attach", runtime);
    r.insert(r.begin() + 2, "--proc-type=secondary");
    return run(r);
  }

  TempDir dir_;
  std::string prefix_;
};

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace mpod::test
