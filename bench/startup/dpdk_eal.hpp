// The two calls of DPDK's EAL the probes use, declared here so the probes do
// not compile DPDK's headers under this project's -Werror flags. Signatures
// as documented for DPDK 22.11 (rte_eal.h).
#pragma once

extern "C" {
int rte_eal_init(int argc, char** argv);
int rte_eal_cleanup(void);
}
