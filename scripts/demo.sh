#!/usr/bin/env bash
# Builds mpod and runs the demo: DPDK's client_server_mp example with the
# server and 4 clients each in a pod of its own (PID 1 of its own PID, UTS,
# mount, IPC and network namespaces when run as root; plain processes
# otherwise), in a fresh runtime directory that is removed afterwards.
# Usage: scripts/demo.sh [mpod-demo options, e.g. --clients=2 --packets=1000000 --no-huge]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mpod-demo mpod-mp-server mpod-mp-client mpod_cli
exec build/bin/mpod-demo "$@"
