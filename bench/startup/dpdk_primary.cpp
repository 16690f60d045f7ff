// mpod-dpdk-primary [EAL options]: a DPDK 22.11 primary for the attach
// benchmark. Prints READY once rte_eal_init returns, runs until SIGTERM.
#include <signal.h>

#include <cstdio>

#include "dpdk_eal.hpp"

int main(int argc, char** argv) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, nullptr);  // before EAL starts its threads
  if (rte_eal_init(argc, argv) < 0) {
    std::fprintf(stderr, "mpod-dpdk-primary: rte_eal_init failed\n");
    return 1;
  }
  std::printf("READY\n");
  std::fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  rte_eal_cleanup();
  return 0;
}
