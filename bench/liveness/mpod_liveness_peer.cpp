// mpod-liveness-peer [runtime options] [-- --subscribe]: an attached mpod
// secondary that does nothing, for mpod-bench-liveness. Once Runtime::start
// returns it prints "READY <id-hex> <CLOCK_MONOTONIC ns>" and blocks in
// sigwait until SIGTERM or SIGINT, then shuts down. With --subscribe it
// first subscribes to peer events and prints, per event,
// "EVENT <attached|exited|crashed> <id-hex> <CLOCK_MONOTONIC ns>", the time
// taken as the handler starts. Each line is one write(2) to stdout, which the
// driver points at a file of its own.
//
// mpod-liveness-peer --launch-only: prints "READY - <ns>" at once, never
// starting the runtime, then waits for SIGTERM or SIGINT: the driver's launch
// floor, the same binary and libraries as an attaching peer.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "mpod/runtime.hpp"

namespace {

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

void print_line(const char* kind, const std::string& id_hex, uint64_t ns) {
  char line[128];
  const int n = std::snprintf(line, sizeof line, "%s %s %llu\n", kind, id_hex.c_str(), (unsigned long long)ns);
  (void)!write(STDOUT_FILENO, line, size_t(n));
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);  // before the runtime starts its threads, so they inherit it
  if (argc == 2 && std::string_view(argv[1]) == "--launch-only") {
    print_line("READY", "-", mono_ns());
    int sig = 0;
    sigwait(&stop, &sig);
    return 0;
  }
  try {
    int first = argc;
    auto rt = mpod::Runtime::start(argc, argv, &first);
    bool subscribe = false;
    for (int i = first; i < argc; ++i) {
      if (std::string_view(argv[i]) != "--subscribe") {
        std::fprintf(stderr, "mpod-liveness-peer: unexpected argument '%s' (only --subscribe)\n", argv[i]);
        return 2;
      }
      subscribe = true;
    }
    if (subscribe)
      rt->channel().subscribe([](const mpod::ProcessInfo& p, mpod::PeerEvent e) {
        const uint64_t now = mono_ns();
        print_line((std::string("EVENT ") + mpod::peer_event_name(e)).c_str(), p.id.hex(), now);
      });
    print_line("READY", rt->self().id.hex(), mono_ns());
    int sig = 0;
    sigwait(&stop, &sig);
  } catch (const mpod::Error& e) {
    std::fprintf(stderr, "mpod-liveness-peer: %s\n", e.what());
    return 1;
  }
  return 0;
}
