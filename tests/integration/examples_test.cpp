// DPDK's multi-process examples ported to mpod (examples/, docs/examples.md),
// run the way they are meant to be: every process in a pod of its own (PID 1
// of its own PID, mount, UTS, IPC and network namespaces), sharing only the
// runtime directory and hugetlbfs.
//
// client_server_mp: a server and 4 clients, two clients started before the
// server and two after; every client exits 0 having checked each packet, the
// clients' received counts add up to what the server enqueued, and enqueued
// plus dropped is what it generated. simple_mp: a primary and a secondary
// send messages both ways, driven by piped commands.
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "domain_fixture.hpp"

namespace mpod::test {
namespace {

// PROGRAM <domain args> <runtime> -- <app>
class ExamplesTest : public DomainTest {
 protected:
  std::vector<std::string> example(const std::string& program, std::vector<std::string> runtime,
                                   std::vector<std::string> app) const {
    std::vector<std::string> a = {bin(program)};
    for (auto& x : domain_args(runtime)) a.push_back(x);
    a.push_back("--");
    a.insert(a.end(), app.begin(), app.end());
    return a;
  }

  bool no_registrations_left() const {
    return !std::filesystem::exists(domain_dir() + "/procs") || std::filesystem::is_empty(domain_dir() + "/procs");
  }
};

// The last line of `out` that starts with "summary ", or "".
std::string summary_line(const std::string& out) {
  std::string last;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("summary ")) last = line;
  return last;
}

class ExamplesClientServer : public ExamplesTest {
 protected:
  // Server and `clients` clients, each in its own pod; clients 0..clients/2-1
  // start before the server, the others once it is up. `server_options`
  // follow the server's --clients and --packets.
  void run_across_pods(std::vector<std::string> runtime, uint64_t packets, int clients = 4,
                       std::vector<std::string> server_options = {}) {
    MPOD_SKIP_UNLESS(cannot_make_pods());
    const PodOptions pod{true, ""};
    auto client_argv = [&](int k) {
      auto rt = runtime;
      rt.push_back("--wait-primary=30");
      return example("mpod-mp-client", rt, {"--client-id", std::to_string(k)});
    };
    std::vector<Child> procs;  // clients by id, then the server
    std::vector<Child> early, late;
    for (int k = 0; k < clients / 2; ++k) early.push_back(Child::spawn(client_argv(k), pod));
    for (auto& c : early) ASSERT_TRUE(c.wait_for_output("waiting for the primary")) << c.output();
    std::vector<std::string> server_args = {"--clients", std::to_string(clients), "--packets", std::to_string(packets)};
    server_args.insert(server_args.end(), server_options.begin(), server_options.end());
    Child server = Child::spawn(example("mpod-mp-server", runtime, server_args), pod);
    ASSERT_TRUE(server.wait_for_output("primary ready")) << server.output();
    for (int k = clients / 2; k < clients; ++k) late.push_back(Child::spawn(client_argv(k), pod));
    for (auto& c : early) procs.push_back(std::move(c));
    for (auto& c : late) procs.push_back(std::move(c));
    procs.push_back(std::move(server));

    auto codes = wait_all(procs, std::chrono::seconds(60));
    uint64_t rx_sum = 0;
    client_outputs_.clear();
    for (int k = 0; k < clients; ++k) {
      const std::string out = procs[k].output();
      client_outputs_.push_back(out);
      ASSERT_EQ(codes[k], 0) << "client " << k << ":\n" << out << "\nserver:\n" << procs.back().output();
      std::smatch m;
      const std::string line = summary_line(out);
      ASSERT_TRUE(std::regex_match(line, m, std::regex("summary role=client id=" + std::to_string(k) +
                                                       " rx=([0-9]+) bad=0 pid=1")))
          << "client " << k << " (each client is PID 1 of its own pod):\n" << out;
      rx_sum += std::stoull(m[1]);
    }
    const std::string out = procs.back().output();
    server_output_ = out;
    ASSERT_EQ(codes.back(), 0) << out;
    std::smatch m;
    const std::string line = summary_line(out);
    ASSERT_TRUE(std::regex_match(line, m, std::regex("summary role=server tx=([0-9]+) clients=" +
                                                     std::to_string(clients) + " drops=([0-9]+)")))
        << out;
    const uint64_t tx = std::stoull(m[1]), drops = std::stoull(m[2]);
    EXPECT_EQ(tx + drops, packets) << out;
    EXPECT_EQ(rx_sum, tx) << "packets the clients received vs. the server enqueued\n" << out;
    EXPECT_GT(tx, 0u) << out;
    EXPECT_TRUE(contains(out, "pid 1,")) << "the server and its clients each run as PID 1\n" << out;
    EXPECT_TRUE(no_registrations_left());
  }

  // Of the last run_across_pods (empty if it was skipped).
  std::string server_output_;
  std::vector<std::string> client_outputs_;  // by client id
};

TEST_F(ExamplesClientServer, FourClientsInPodsNoHuge) {
  run_across_pods({"--no-huge"}, 200000);
  if (IsSkipped() || HasFatalFailure()) return;
  // Lengths drawn per packet: each client saw a spread within Ethernet's payload sizes.
  for (const std::string& out : client_outputs_) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(out, m, std::regex("payloads of ([0-9]+)\\.\\.([0-9]+) bytes"))) << out;
    EXPECT_GE(std::stoul(m[1]), 46u) << out;
    EXPECT_LE(std::stoul(m[2]), 1500u) << out;
    EXPECT_LT(std::stoul(m[1]), std::stoul(m[2])) << out;
  }
}

// Minimum-size frames: every payload 46 bytes, as each client reports.
TEST_F(ExamplesClientServer, FourClientsInPods64ByteFrames) {
  run_across_pods({"--no-huge"}, 400000, 4, {"--payload", "46"});
  if (IsSkipped() || HasFatalFailure()) return;
  EXPECT_TRUE(contains(server_output_, "payloads of 46 bytes")) << server_output_;
  ASSERT_EQ(client_outputs_.size(), 4u);
  for (size_t k = 0; k < client_outputs_.size(); ++k)
    EXPECT_TRUE(contains(client_outputs_[k], "client " + std::to_string(k) + ": payloads of 46..46 bytes"))
        << client_outputs_[k];
}

TEST_F(ExamplesClientServer, FourClientsInPodsHugepages) {
  MPOD_SKIP_UNLESS(cannot_use_hugepages(64));
  run_across_pods({}, 200000);
  if (IsSkipped() || HasFatalFailure()) return;
  EXPECT_EQ(page_files(prefix_), 0u) << "the last process out removes the hugepage files";
}

// A client stopped early (SIGINT) prints its summary and leaves; the server
// counts what was left in its ring as drops, and the totals still add up.
TEST_F(ExamplesClientServer, ClientStoppedEarlyAndServerStoppedBySignalStillAddUp) {
  Child server = Child::spawn(example("mpod-mp-server", {"--no-huge"}, {"--clients", "2", "--packets", "0"}));
  ASSERT_TRUE(server.wait_for_output("primary ready")) << server.output();
  Child c0 = Child::spawn(example("mpod-mp-client", {"--no-huge"}, {"--client-id", "0"}));
  Child c1 = Child::spawn(example("mpod-mp-client", {"--no-huge"}, {"--client-id=1"}));
  ASSERT_TRUE(server.wait_for_output("generated=")) << server.output();  // stats every 2 s
  c0.signal(SIGINT);
  ASSERT_EQ(c0.wait(std::chrono::seconds(10)), 0) << c0.output();
  EXPECT_TRUE(contains(c0.output(), "stopped by signal")) << c0.output();
  server.signal(SIGTERM);
  ASSERT_EQ(server.wait(std::chrono::seconds(20)), 0) << server.output();
  ASSERT_EQ(c1.wait(std::chrono::seconds(10)), 0) << c1.output();

  std::smatch m;
  const std::string s0 = summary_line(c0.output()), s1 = summary_line(c1.output()), ss = summary_line(server.output());
  ASSERT_TRUE(std::regex_match(s0, m, std::regex("summary role=client id=0 rx=([0-9]+) bad=0 pid=[0-9]+"))) << s0;
  const uint64_t rx0 = std::stoull(m[1]);
  ASSERT_TRUE(std::regex_match(s1, m, std::regex("summary role=client id=1 rx=([0-9]+) bad=0 pid=[0-9]+"))) << s1;
  const uint64_t rx1 = std::stoull(m[1]);
  ASSERT_TRUE(std::regex_match(ss, m, std::regex("summary role=server tx=([0-9]+) clients=2 drops=([0-9]+)"))) << ss;
  EXPECT_EQ(rx0 + rx1, std::stoull(m[1])) << server.output();
  EXPECT_TRUE(contains(server.output(), "client 0 rx=" + std::to_string(rx0) + " bad=0 left early")) << server.output();
  EXPECT_TRUE(contains(server.output(), "stopped by signal 15")) << server.output();
}

// A client SIGKILLed while packets flow, and a new client started with its
// id: the server counts the dead one, and buffers it held in hand are
// reported as lost with it, never as a bug of the pool.
TEST_F(ExamplesClientServer, AKilledAndReplacedClientIsCountedAndItsBuffersAsLost) {
  Child server = Child::spawn(example("mpod-mp-server", {"--no-huge"}, {"--clients", "2", "--packets", "0"}));
  ASSERT_TRUE(server.wait_for_output("primary ready")) << server.output();
  Child c0 = Child::spawn(example("mpod-mp-client", {"--no-huge"}, {"--client-id", "0"}));
  Child c1 = Child::spawn(example("mpod-mp-client", {"--no-huge"}, {"--client-id", "1"}));
  ASSERT_TRUE(server.wait_for_output("generated=")) << server.output();  // stats every 2 s: packets flow
  c0.signal(SIGKILL);
  c0.wait(std::chrono::seconds(10));
  Child again = Child::spawn(example("mpod-mp-client", {"--no-huge"}, {"--client-id", "0"}));
  ASSERT_TRUE(again.wait_for_output("attached")) << again.output();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(std::chrono::seconds(20)), 1) << "a client died: the server says so in its exit code\n"
                                                       << server.output();
  EXPECT_EQ(again.wait(std::chrono::seconds(10)), 0) << again.output();
  EXPECT_EQ(c1.wait(std::chrono::seconds(10)), 0) << c1.output();
  const std::string out = server.output();
  EXPECT_TRUE(contains(out, "client 0: 1 earlier client(s) with this id died and were replaced")) << out;
  EXPECT_FALSE(contains(out, "a bug")) << out;
  // Buffers the dead client held, if any, are counted as lost with it.
  if (contains(out, "are not back") || contains(out, "were lost")) {
    EXPECT_TRUE(contains(out, "were lost with the 1 client(s) that died holding them")) << out;
  }
}

TEST_F(ExamplesClientServer, MistakesAreExplained) {
  auto r = run(example("mpod-mp-server", {"--no-huge"}, {"--packets", "10"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "--clients C is required")) << r.output;
  r = run(example("mpod-mp-server", {"--no-huge"}, {"--clients", "40"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "--clients needs a whole number from 1 to 32, got '40'")) << r.output;
  r = run(example("mpod-mp-server", {"--no-huge"}, {"--clients", "1", "--payload", "45"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "--payload 45 is not an Ethernet payload size: give 46..1500 bytes")) << r.output;
  r = run(example("mpod-mp-server", {"--no-huge"}, {"--clients", "1", "--payload", "1501"}));
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.output, "--payload 1501 is not an Ethernet payload size: give 46..1500 bytes")) << r.output;
  r = run(example("mpod-mp-client", {"--no-huge"}, {"--client-id", "0"}));  // no server, no --wait-primary
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "no primary is running")) << r.output;
  EXPECT_TRUE(contains(r.output, "--wait-primary")) << r.output;

  Child server = Child::spawn(example("mpod-mp-server", {"--no-huge"}, {"--clients", "1", "--packets", "100"}));
  ASSERT_TRUE(server.wait_for_output("primary ready")) << server.output();
  r = run(example("mpod-mp-client", {"--no-huge"}, {"--client-id", "3"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.output, "--client-id 3 is out of range: the server runs 1 clients, ids 0..0")) << r.output;
  r = run(example("mpod-mp-client", {"--no-huge"}, {"--client-id", "0"}));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(server.wait(std::chrono::seconds(20)), 0) << server.output();
  EXPECT_TRUE(contains(server.output(), "summary role=server tx=")) << server.output();
}

class ExamplesSimpleMp : public ExamplesTest {
 protected:
  // Runs mpod-simple-mp with `commands` piped to its stdin, in a pod of its own.
  Child start(const std::string& name, std::vector<std::string> runtime, const std::string& commands) {
    const std::string script = dir_.path() + "/" + name + ".commands";
    std::ofstream(script) << commands;
    std::vector<std::string> argv = {"sh", "-c", "exec \"$@\" < " + script, "sh"};
    for (auto& a : example("mpod-simple-mp", runtime, {})) argv.push_back(a);
    argv.pop_back();  // no application options: drop the "--"
    return Child::spawn(argv, PodOptions{true, ""});
  }
};

TEST_F(ExamplesSimpleMp, MessagesCrossBothWaysBetweenPods) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child primary = start("primary", {"--no-huge"},
                        "send hello from the primary\nsend second message, with spaces\nsend 3\nwait 3 20\nquit\n");
  ASSERT_TRUE(primary.wait_for_output("primary ready")) << primary.output();
  Child secondary = start("secondary", {"--no-huge", "--proc-type=secondary"},
                          "help\nsend hello from the secondary\nsend two\nsend three\nwait 3 20\n");  // ends at EOF
  std::vector<Child> both;
  both.push_back(std::move(primary));
  both.push_back(std::move(secondary));
  auto codes = wait_all(both, std::chrono::seconds(30));
  const std::string p = both[0].output(), s = both[1].output();
  ASSERT_EQ(codes[0], 0) << p << "\nsecondary:\n" << s;
  ASSERT_EQ(codes[1], 0) << s << "\nprimary:\n" << p;
  EXPECT_TRUE(contains(p, "primary ready (pid 1,")) << p;
  EXPECT_TRUE(contains(s, "secondary ready (pid 1,")) << s;
  for (auto text : {"hello from the secondary", "two", "three"}) EXPECT_TRUE(contains(p, std::string("received: ") + text + "\n")) << p;
  for (auto text : {"hello from the primary", "second message, with spaces", "3"})
    EXPECT_TRUE(contains(s, std::string("received: ") + text + "\n")) << s;
  EXPECT_TRUE(contains(s, "send <text>")) << "help lists the commands\n" << s;
  EXPECT_TRUE(no_registrations_left());
}

TEST_F(ExamplesSimpleMp, FailedWaitAndUnknownCommandsFailAScript) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  Child primary = start("primary", {"--no-huge"}, "wait 1 0.2\nsend never\n");
  EXPECT_EQ(primary.wait(std::chrono::seconds(20)), 1) << primary.output();
  EXPECT_TRUE(contains(primary.output(), "wait: 0 of 1 messages received after 0.2 s; is the other side running"))
      << primary.output();
  Child again = start("again", {"--no-huge"}, "frobnicate\nquit\n");
  EXPECT_EQ(again.wait(std::chrono::seconds(20)), 1) << again.output();
  EXPECT_TRUE(contains(again.output(), "unknown command 'frobnicate'; type help for the list")) << again.output();
}

// The README's demo: server and clients in pods, summaries that add up, and
// nothing left behind (no processes, no runtime directory, no page files).
TEST(ExamplesDemo, RunsAcrossPodsAndCleansUp) {
  MPOD_SKIP_UNLESS(cannot_make_pods());
  auto demo_dirs = [] {
    std::set<std::string> dirs;
    for (auto& e : std::filesystem::directory_iterator("/tmp"))
      if (e.path().filename().string().starts_with("mpod-demo-")) dirs.insert(e.path());
    return dirs;
  };
  const auto before = demo_dirs();
  auto r = run({bin("mpod-demo"), "--clients=3", "--packets=30000", "--no-huge"});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "mpod demo: PASS: 3 clients (each PID 1 of its own pod) received")) << r.output;
  EXPECT_TRUE(contains(r.output, "(tx + drops = 30000), 0 bad")) << r.output;
  for (int k = 0; k < 3; ++k)
    EXPECT_TRUE(contains(r.output, "client " + std::to_string(k) + " attached (pid 1, host client-" +
                                       std::to_string(k) + ")"))
        << r.output;
  EXPECT_EQ(demo_dirs(), before) << "the demo removes its runtime directory";
}

}  // namespace
}  // namespace mpod::test
