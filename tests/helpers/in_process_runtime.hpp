// A fixture for unit tests that need one primary Runtime in this process,
// on plain files in a fresh directory.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "mpod/runtime.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod::test {

class InProcessRuntime : public testing::Test {
 protected:
  explicit InProcessRuntime(const char* prefix, uint64_t memory_mb = 64) : prefix_(prefix), memory_mb_(memory_mb) {}
  void SetUp() override {
    Options o;
    o.runtime_dir = dir_.path();
    o.file_prefix = prefix_;
    o.no_huge = true;
    o.memory_mb = memory_mb_;
    rt_ = Runtime::start(o);
  }
  TempDir dir_;
  const char* prefix_;
  uint64_t memory_mb_;
  std::unique_ptr<Runtime> rt_;
};

}  // namespace mpod::test
