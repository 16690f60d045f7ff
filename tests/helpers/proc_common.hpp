// What the helper programs (mpod-test-proc, mpod-test-dataplane, mpod-test-chaos) share.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <string>
#include <vector>

namespace mpod::test {

// SIGTERM and SIGINT: how a test asks a helper to stop.
inline sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Called first in main(): the stop signals queue instead of killing, so
// wait_for_stop() can take them (and the Runtime's threads inherit the mask).
inline void block_stop_signals() {
  const sigset_t set = stop_signals();
  sigprocmask(SIG_BLOCK, &set, nullptr);
}

// Blocks until SIGTERM or SIGINT (blocked by block_stop_signals, so they queue).
inline void wait_for_stop() {
  const sigset_t set = stop_signals();
  int sig;
  sigwait(&set, &sig);
}

// Applies a leading "--hostname=NAME" (the UTS name of a pod the test made
// with its own UTS namespace) and returns the index of the mode argument.
inline int apply_hostname_arg(int argc, char** argv) {
  if (argc > 1 && std::strncmp(argv[1], "--hostname=", 11) == 0) {
    if (sethostname(argv[1] + 11, std::strlen(argv[1] + 11)) != 0) std::perror("sethostname");
    return 2;
  }
  return 1;
}

// "a,b,c" -> {"a", "b", "c"}
inline std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> f;
  for (size_t at = 0, c; at <= s.size(); at = c + 1) {
    c = s.find(',', at);
    if (c == std::string::npos) c = s.size();
    f.push_back(s.substr(at, c - at));
  }
  return f;
}

}  // namespace mpod::test
