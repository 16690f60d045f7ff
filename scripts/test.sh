#!/usr/bin/env bash
# Builds mpod and runs every test: a normal build, then AddressSanitizer +
# UndefinedBehaviorSanitizer, then ThreadSanitizer (the lock-free mailbox,
# rings and pools, and every other test with it). Tests that need root, PID namespaces or
# hugepages print why they skip where the machine cannot run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/hugepages.sh

run_suite() {  # name, build dir, extra cmake args...
  local name=$1 dir=$2
  shift 2
  echo "=== $name: configure and build ($dir)"
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
  echo "=== $name: ctest"
  (cd "$dir" && ctest --output-on-failure --timeout 600)
}

run_suite "release" build -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_suite "asan+ubsan" build-asan -DCMAKE_BUILD_TYPE=Debug -DMPOD_SANITIZE=address,undefined -DMPOD_BUILD_BENCH=OFF
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  run_suite "tsan" build-tsan -DCMAKE_BUILD_TYPE=Debug -DMPOD_SANITIZE=thread -DMPOD_BUILD_BENCH=OFF
# The channel's message decoder under libFuzzer, for a bounded time, from the
# seed corpus (new inputs go to a scratch directory, not into the tree).
echo "=== fuzz: wire decoder, ${MPOD_FUZZ_SECONDS:-60} s"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPOD_FUZZ=ON \
  -DMPOD_BUILD_TESTS=OFF -DMPOD_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target mpod-fuzz-wire-decode
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/corpus"
if ! build-fuzz/bin/mpod-fuzz-wire-decode -max_total_time="${MPOD_FUZZ_SECONDS:-60}" -print_final_stats=1 \
  "$scratch/corpus" tests/fuzz/corpus/wire_decode >"$scratch/log" 2>&1; then
  tail -60 "$scratch/log"
  echo "=== fuzz: the wire decoder crashed; the input is saved as crash-* in $(pwd)" >&2
  exit 1
fi
grep -E "^stat::(number_of_executed_units|new_units_added)" "$scratch/log"
echo "=== all test suites passed"
