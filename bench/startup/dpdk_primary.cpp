// mpod-dpdk-primary [EAL options]: a DPDK 22.11 process that initialises EAL
// and waits: the primary of mpod-bench-attach, and both the primary and the
// idle secondaries (--proc-type=secondary) of mpod-bench-liveness. Prints
// "READY <CLOCK_MONOTONIC ns>" once rte_eal_init returns, runs until SIGTERM
// or SIGINT.
#include <signal.h>
#include <time.h>

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
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  std::printf("READY %lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
  std::fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  rte_eal_cleanup();
  return 0;
}
