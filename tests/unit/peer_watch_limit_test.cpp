// PeerWatch's process limit: the watcher admits members up to
// Limits::max_members (itself included) and refuses the next with an error
// that names the domain and the limit, while those already admitted stay.
// The runtime uses the default limit, kMaxProcesses (a primary and
// kMaxSecondaries secondaries); a small one here keeps the test to one
// process: every registration holds its own OFD lock, so the watcher tells
// them apart just as it tells processes apart.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "src/ipc/peer_watch.hpp"
#include "src/ipc/mailbox.hpp"
#include "src/os/os.hpp"
#include "src/runtime/registry.hpp"
#include "tests/helpers/process_harness.hpp"

namespace mpod {
namespace {

using test::TempDir;

constexpr uint64_t kAdmitNs = 10'000'000'000ull;

struct Domain {
  TempDir dir;
  Domain() {
    std::filesystem::create_directory(registry::procs_dir(dir.path()));
    std::filesystem::create_directory(dir.path() + "/mp");
    // As the runtime's prepare_dirs makes it.
    mp().open_or_create(PeerWatch::kLockName, O_RDWR, 0600, os::effective_uid());
  }
  os::Dir mp() const { return registry::open_domain_subdir(dir.path(), "mp"); }
};

// No reaping in this test: every registration stays alive until the end.
PeerWatch::Hooks quiet_hooks() {
  PeerWatch::Hooks h;
  h.event = [](const ProcessInfo&, PeerEvent) {};
  h.members = [](const std::vector<ProcessInfo>&, bool) { return std::vector<ProcessInfo>{}; };
  h.reap = [](const ProcessInfo&) { return true; };
  h.sweep = [] { return std::vector<ProcessInfo>{}; };
  return h;
}

// The events a tracking watcher hears, for the test to wait on.
struct Heard {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<ProcessId, PeerEvent>> events;

  PeerWatch::Hooks hooks() {
    PeerWatch::Hooks h = quiet_hooks();
    h.event = [this](const ProcessInfo& p, PeerEvent e) {
      std::lock_guard g(mu);
      events.emplace_back(p.id, e);
      cv.notify_all();
    };
    return h;
  }
  bool wait_for(const ProcessId& id, PeerEvent e) {
    std::unique_lock g(mu);
    return cv.wait_for(g, std::chrono::seconds(30), [&] {
      for (auto& [i, ev] : events)
        if (i == id && ev == e) return true;
      return false;
    });
  }
};

TEST(PeerWatchLimit, DefaultsToAPrimaryAnd1024Secondaries) {
  EXPECT_EQ(kMaxSecondaries, 1024u);
  EXPECT_EQ(kMaxProcesses, kMaxSecondaries + 1);
  EXPECT_EQ(PeerWatch::Limits{}.max_members, kMaxProcesses);
  // Every other process of a full domain has a lane of its own in a mailbox.
  EXPECT_EQ(mailbox::kLanes, kMaxProcesses - 1);
}

TEST(PeerWatchLimit, TheProcessPastTheLimitIsRefusedWithTheLimitNamed) {
  Domain d;
  PeerWatch::Limits limits;
  limits.max_members = 3;  // the watcher and two more
  Heard heard;  // before the watches: it outlives their threads, which call it
  std::vector<registry::Registration> regs;
  std::vector<std::unique_ptr<PeerWatch>> watches;
  for (int i = 0; i < 3; ++i) {
    regs.push_back(registry::Registration::create(d.dir.path(), i == 0 ? Role::primary : Role::secondary));
    watches.push_back(std::make_unique<PeerWatch>(d.dir.path(), d.mp(), regs.back().info(), os::Fd{},
                                                  i == 0 ? heard.hooks() : quiet_hooks(), limits, kAdmitNs));
  }
  ASSERT_TRUE(watches[0]->is_watcher()) << "the first to join should have taken the watch lock";
  ASSERT_TRUE(watches[0]->track());
  EXPECT_FALSE(watches[1]->is_watcher());
  EXPECT_FALSE(watches[2]->is_watcher());

  regs.push_back(registry::Registration::create(d.dir.path(), Role::secondary));
  try {
    PeerWatch fourth(d.dir.path(), d.mp(), regs.back().info(), os::Fd{}, quiet_hooks(), limits, kAdmitNs);
    ADD_FAILURE() << "a fourth process was admitted to a domain limited to 3";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::busy) << e.what();
    const std::string what = e.what();
    EXPECT_NE(what.find("maximum of 3 processes"), std::string::npos) << what;
    EXPECT_NE(what.find("a primary and 2 secondaries"), std::string::npos) << what;
    EXPECT_NE(what.find(d.dir.path()), std::string::npos) << what;
  }

  // One leaves (bye): once the watcher has seen it go, its place is free
  // and the next one is admitted.
  watches.pop_back();
  ASSERT_TRUE(heard.wait_for(regs[2].info().id, PeerEvent::exited)) << "the watcher never saw the third process leave";
  PeerWatch again(d.dir.path(), d.mp(), regs.back().info(), os::Fd{}, quiet_hooks(), limits, kAdmitNs);
  EXPECT_FALSE(again.is_watcher());
}

}  // namespace
}  // namespace mpod
