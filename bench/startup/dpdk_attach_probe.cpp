// dpdk-attach-probe [EAL options]: DPDK 22.11's secondary start-up
// (rte_eal_init with --proc-type=secondary), signal ready, rte_eal_cleanup.
#include <cstdio>

#include "dpdk_eal.hpp"
#include "probe_common.hpp"

int main(int argc, char** argv) {
  if (rte_eal_init(argc, argv) < 0) {
    std::fprintf(stderr, "dpdk-attach-probe: rte_eal_init failed\n");
    return 1;
  }
  signal_ready();
  rte_eal_cleanup();
  return 0;
}
