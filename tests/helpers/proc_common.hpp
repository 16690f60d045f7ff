// What the helper programs (mpod-test-proc, mpod-test-dataplane) share.
#pragma once

#include <signal.h>

#include <string>
#include <vector>

namespace mpod::test {

// Blocks until SIGTERM or SIGINT (which main() has blocked, so they queue).
inline void wait_for_stop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig;
  sigwait(&set, &sig);
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
