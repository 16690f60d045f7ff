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
# What a process reads from files and datagrams others can write, under
# libFuzzer, each target for a bounded time from its seed corpus (new inputs
# go to a scratch directory, not into the tree): the channel's message
# decoder, and the config and fbarray headers a secondary checks on attach.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPOD_FUZZ=ON \
  -DMPOD_BUILD_TESTS=OFF -DMPOD_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target mpod-fuzz-wire-decode mpod-fuzz-shared-headers
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fuzz() {  # target, seed corpus
  echo "=== fuzz: $1, ${MPOD_FUZZ_SECONDS:-60} s"
  mkdir "$scratch/$1"
  if ! "build-fuzz/bin/$1" -max_total_time="${MPOD_FUZZ_SECONDS:-60}" -print_final_stats=1 \
    "$scratch/$1" "$2" >"$scratch/$1.log" 2>&1; then
    tail -60 "$scratch/$1.log"
    echo "=== fuzz: $1 crashed; the input is saved as crash-* in $(pwd)" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$scratch/$1.log"
}
fuzz mpod-fuzz-wire-decode tests/fuzz/corpus/wire_decode
fuzz mpod-fuzz-shared-headers tests/fuzz/corpus/shared_headers
echo "=== all test suites passed"
