// A primary and 16 secondaries attached at the same time, each reading what
// the primary wrote and writing its own memzone: in separate PID namespaces
// (every secondary is PID 1, the layout that breaks DPDK) and in a shared one,
// on hugepages and on plain files.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "tests/helpers/process_harness.hpp"

namespace mpod::test {
namespace {

constexpr int kPods = 16;

struct Layout {
  bool own_pid_ns;
  bool hugepages;
};

std::string name_of(const testing::TestParamInfo<Layout>& info) {
  return std::string(info.param.own_pid_ns ? "OwnPidNamespaces" : "SharedPidNamespace") +
         (info.param.hugepages ? "Hugepages" : "NoHuge");
}

class Pods : public testing::TestWithParam<Layout> {};

TEST_P(Pods, SixteenSecondariesAttachAtOnce) {
  const Layout layout = GetParam();
  if (layout.own_pid_ns) MPOD_SKIP_UNLESS(cannot_make_pods());
  if (layout.hugepages) MPOD_SKIP_UNLESS(cannot_use_hugepages(16));
  TempDir dir;
  const std::string prefix = "pods";
  std::vector<std::string> rt = {"--runtime-dir=" + dir.path(), "--file-prefix=" + prefix, "-m", "32"};
  if (!layout.hugepages) rt.push_back("--no-huge");

  std::vector<std::string> primary_argv = {bin("mpod-test-proc"), "primary"};
  primary_argv.insert(primary_argv.end(), rt.begin(), rt.end());
  primary_argv.insert(primary_argv.end(), {"--", "--greeting=hi-pods"});
  Child primary = Child::spawn(primary_argv);
  ASSERT_TRUE(primary.wait_for_output("READY")) << primary.output();

  std::vector<Child> pods;
  for (int k = 0; k < kPods; ++k) {
    std::vector<std::string> argv = {bin("mpod-test-proc"), "pod"};
    argv.insert(argv.end(), rt.begin(), rt.end());
    argv.insert(argv.end(), {"--", "--greeting=hi-pods", "--pods=" + std::to_string(kPods),
                             "--index=" + std::to_string(k)});
    if (layout.own_pid_ns) argv.push_back("--expect-pid1");
    PodOptions pod;
    pod.own_pid_ns = layout.own_pid_ns;
    if (layout.own_pid_ns) pod.hostname = "pod-" + std::to_string(k);
    pods.push_back(Child::spawn(argv, pod));
  }
  auto codes = wait_all(pods, std::chrono::seconds(150));
  for (int k = 0; k < kPods; ++k) {
    EXPECT_EQ(codes[k], 0) << "pod " << k << ":\n" << pods[k].output();
    EXPECT_NE(pods[k].output().find("POD-OK index=" + std::to_string(k)), std::string::npos)
        << pods[k].output();
    if (layout.own_pid_ns) {
      EXPECT_NE(pods[k].output().find(" pid=1 host=pod-" + std::to_string(k) + " "), std::string::npos)
          << pods[k].output();
    }
  }
  // Every secondary left cleanly: only the primary is registered and no
  // per-process fbarray of a secondary remains.
  auto info = run({bin("mpod"), "info", "--json", "--runtime-dir=" + dir.path(), "--file-prefix=" + prefix});
  ASSERT_EQ(info.code, 0) << info.output;
  EXPECT_EQ(info.output.find("\"role\":\"secondary\",\"pid\":1,"), std::string::npos) << info.output;
  for (int k = 0; k < kPods; ++k)
    EXPECT_NE(info.output.find("\"name\":\"pod_" + std::to_string(k) + "\""), std::string::npos) << info.output;

  primary.signal(SIGTERM);
  EXPECT_EQ(primary.wait(), 0) << primary.output();
}

INSTANTIATE_TEST_SUITE_P(Layouts, Pods,
                         testing::Values(Layout{true, true}, Layout{true, false}, Layout{false, true},
                                         Layout{false, false}),
                         name_of);

}  // namespace
}  // namespace mpod::test
