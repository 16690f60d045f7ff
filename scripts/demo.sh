#!/usr/bin/env bash
# Builds mpod and runs the demo: a primary and N pods sharing memory.
# Usage: scripts/demo.sh [mpod-demo options, e.g. --pods=8 --no-huge]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target mpod-demo mpod_cli
exec build/bin/mpod-demo "$@"
