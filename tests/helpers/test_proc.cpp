// mpod-test-proc: the process the integration tests start, often as PID 1 of
// its own simulated pod.
//
//   mpod-test-proc [--hostname=NAME] MODE [runtime options] [-- MODE ARGS]
//
// MODE
//   primary   [--greeting=TEXT]    primary; memzones "greeting" (TEXT) and "barrier"; waits for SIGTERM
//   pod       --pods=N --index=K [--greeting=TEXT] [--expect-pid1]
//             secondary: checks the greeting, reserves and fills memzone pod_K, waits until all N
//             pods are attached at once, then checks every pod_J; prints POD-OK
//   attach    [--hold] [--reserve=NAME:BYTES]   starts with the given options; prints ATTACHED
//
// Exit codes: 0 success, 1 mpod::Error (printed as "ERROR <code>: <message>"), 2 check failed.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "mpod/runtime.hpp"

namespace {

using namespace mpod;

struct Args {
  std::string greeting = "hello from the primary";
  int pods = 0, index = -1;
  bool expect_pid1 = false, hold = false;
  std::string reserve;
};

[[noreturn]] void fail(const std::string& what) {
  std::printf("CHECK-FAILED %s\n", what.c_str());
  std::fflush(stdout);
  std::exit(2);
}

void wait_for_stop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig;
  sigwait(&set, &sig);
}

struct Barrier {
  std::atomic<uint32_t> attached;
};

void write_text(void* dst, uint64_t cap, const std::string& s) {
  if (s.size() + 1 > cap) fail("text too long for memzone");
  std::memcpy(dst, s.c_str(), s.size() + 1);
}

int run_primary(Runtime& rt, const Args& a) {
  auto g = rt.memzones().reserve("greeting", 4096);
  write_text(g.addr, g.len, a.greeting);
  rt.memzones().reserve("barrier", sizeof(Barrier));
  std::printf("READY id=%s pid=%d\n", rt.self().id.hex().c_str(), rt.self().pid);
  std::fflush(stdout);
  wait_for_stop();
  std::printf("EXIT\n");
  return 0;
}

std::string pod_text(int index, const ProcessInfo& self) {
  return "pod " + std::to_string(index) + " id=" + self.id.hex() + " host=" + self.hostname +
         " pid=" + std::to_string(self.pid);
}

int run_pod(Runtime& rt, const Args& a) {
  const auto& self = rt.self();
  if (a.expect_pid1 && self.pid != 1) fail("expected to be PID 1 in my pod, am " + std::to_string(self.pid));
  auto g = rt.memzones().lookup("greeting");
  if (!g) fail("memzone greeting not found");
  if (a.greeting != static_cast<const char*>(g->addr))
    fail(std::string("greeting reads '") + static_cast<const char*>(g->addr) + "'");
  auto mine = rt.memzones().reserve("pod_" + std::to_string(a.index), 4096);
  write_text(mine.addr, mine.len, pod_text(a.index, self));
  auto b = rt.memzones().lookup("barrier");
  if (!b) fail("memzone barrier not found");
  auto* barrier = static_cast<Barrier*>(b->addr);
  barrier->attached.fetch_add(1);
  // Everybody attached at the same time: wait for all N, then look at them all.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (barrier->attached.load() < static_cast<uint32_t>(a.pods)) {
    if (std::chrono::steady_clock::now() > deadline)
      fail("only " + std::to_string(barrier->attached.load()) + " of " + std::to_string(a.pods) + " pods attached");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int alive_secondaries = 0;
  for (auto& p : rt.processes()) alive_secondaries += p.alive && p.role == Role::secondary;
  if (alive_secondaries < a.pods)
    fail("only " + std::to_string(alive_secondaries) + " live secondaries while all " + std::to_string(a.pods) +
         " should be attached");
  for (int j = 0; j < a.pods; ++j) {
    auto z = rt.memzones().lookup("pod_" + std::to_string(j));
    if (!z) fail("memzone pod_" + std::to_string(j) + " missing");
    std::string text = static_cast<const char*>(z->addr);
    if (!text.starts_with("pod " + std::to_string(j) + " id=")) fail("memzone pod_" + std::to_string(j) + " reads '" + text + "'");
  }
  // Stay until every pod has checked, so the "all at once" claim holds for all.
  barrier->attached.fetch_add(1);
  while (barrier->attached.load() < 2u * static_cast<uint32_t>(a.pods)) {
    if (std::chrono::steady_clock::now() > deadline) fail("pods did not all finish checking");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::printf("POD-OK index=%d pid=%d host=%s id=%s alive_secondaries=%d\n", a.index, self.pid,
              self.hostname.c_str(), self.id.hex().c_str(), alive_secondaries);
  return 0;
}

int run_attach(Runtime& rt, const Args& a) {
  std::printf("ATTACHED role=%s id=%s pid=%d\n", role_name(rt.role()), rt.self().id.hex().c_str(), rt.self().pid);
  if (!a.reserve.empty()) {
    auto colon = a.reserve.find(':');
    auto z = rt.memzones().reserve(a.reserve.substr(0, colon), std::stoull(a.reserve.substr(colon + 1)));
    std::printf("RESERVED %s at %p\n", z.name.c_str(), z.addr);
  }
  std::fflush(stdout);
  if (a.hold) wait_for_stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int i = 1;
  if (i < argc && std::strncmp(argv[i], "--hostname=", 11) == 0) {
    const char* h = argv[i] + 11;
    if (sethostname(h, std::strlen(h)) != 0) std::perror("sethostname");
    ++i;
  }
  if (i >= argc) {
    std::fprintf(stderr, "usage: mpod-test-proc [--hostname=NAME] primary|pod|attach [runtime options] [-- args]\n");
    return 2;
  }
  std::string mode = argv[i];
  // Runtime options follow the mode; hand parse_options an argv whose [0] is the mode.
  char** rargv = argv + i;
  int rargc = argc - i;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  try {
    Options o;
    int first = parse_options(rargc, rargv, o);
    Args a;
    for (int k = first; k < rargc; ++k) {
      std::string s = rargv[k];
      if (s.starts_with("--greeting=")) a.greeting = s.substr(11);
      else if (s.starts_with("--pods=")) a.pods = std::stoi(s.substr(7));
      else if (s.starts_with("--index=")) a.index = std::stoi(s.substr(8));
      else if (s == "--expect-pid1") a.expect_pid1 = true;
      else if (s == "--hold") a.hold = true;
      else if (s.starts_with("--reserve=")) a.reserve = s.substr(10);
      else {
        std::fprintf(stderr, "mpod-test-proc: unknown argument %s\n", s.c_str());
        return 2;
      }
    }
    if (mode == "primary" && o.proc_type == ProcType::secondary) o.proc_type = ProcType::primary;
    if (mode == "pod") o.proc_type = ProcType::secondary;
    auto rt = Runtime::start(o);
    if (mode == "primary") return run_primary(*rt, a);
    if (mode == "pod") return run_pod(*rt, a);
    if (mode == "attach") return run_attach(*rt, a);
    std::fprintf(stderr, "mpod-test-proc: unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const Error& e) {
    std::printf("ERROR %s: %s\n", errc_name(e.code()), e.what());
    return 1;
  }
}
