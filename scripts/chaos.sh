#!/usr/bin/env bash
# Longer chaos runs than the one in the normal suite: the same test
# (tests/integration/chaos_test.cpp, with its pods in tests/helpers/chaos_proc.cpp),
# by default with 1000 SIGKILLs of pods at random points, a quarter of them
# inside Runtime::start, on 2 MB hugepages when the machine has them. Prints
# the test's figures: kills and kills during attach, objects lost to dead
# processes per ring and pool, what dead pods held, the slowest call the
# survivors made (how long they were blocked), the duration.
#
#   scripts/chaos.sh [--kills=N] [--pods=N] [--huge|--no-huge] [--seed=S] [--runs=N] [--build=DIR]
#
#   --kills=N   SIGKILLs per run (1000); a quarter land inside Runtime::start
#   --pods=N    pods beside the primary, each PID 1 of its own PID namespace (8)
#   --huge      2 MB hugepages (reserved and mounted by scripts/hugepages.sh when root);
#   --no-huge   plain files; the default is hugepages when 80 are free, else plain files
#   --seed=S    the pods' random choices (the kills' timing is the machine's)
#   --runs=N    runs in a row; stops at the first failure (1)
#   --build=DIR the build to use: build (RelWithDebInfo), or a sanitizer build (build-asan, build-tsan)
#
# Needs root (PID namespaces), as the test does; without it the test skips and says why.
set -euo pipefail
cd "$(dirname "$0")/.."

kills=1000 pods=8 huge=auto seed="" runs=1 build=build
for arg in "$@"; do
  case "$arg" in
    --kills=*) kills=${arg#*=} ;;
    --pods=*) pods=${arg#*=} ;;
    --huge) huge=on ;;
    --no-huge) huge=off ;;
    --seed=*) seed=${arg#*=} ;;
    --runs=*) runs=${arg#*=} ;;
    --build=*) build=${arg#*=} ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "chaos.sh: unknown argument '$arg' (see scripts/chaos.sh --help)" >&2
      exit 2
      ;;
  esac
done
for n in "$kills" "$pods" "$runs"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "chaos.sh: --kills, --pods and --runs take a positive number, got '$n'" >&2; exit 2; }
done

if [ "$huge" != off ]; then bash scripts/hugepages.sh; fi
if [ "$huge" = auto ]; then
  free=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
  if [ "${free:-0}" -ge 80 ] && grep -qs " hugetlbfs " /proc/mounts; then huge=on; else huge=off; fi
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target mpod_integration_tests mpod-test-chaos mpod_cli >/dev/null

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
echo "chaos.sh: $runs run(s) of $kills kills, $pods pods, $([ "$huge" = on ] && echo "2 MB hugepages" || echo "plain files"), build $build"
for run in $(seq 1 "$runs"); do
  log="$logs/run-$run.log"
  SECONDS=0
  status=0
  MPOD_CHAOS_KILLS=$kills MPOD_CHAOS_PODS=$pods MPOD_CHAOS_HUGE=$([ "$huge" = on ] && echo 1 || echo 0) \
    ${seed:+MPOD_CHAOS_SEED=$seed} "$build/bin/mpod_integration_tests" --gtest_filter='Chaos.*' >"$log" 2>&1 || status=$?
  echo "=== run $run: $([ $status = 0 ] && echo PASS || echo "FAIL (exit $status)") in $SECONDS s"
  grep -E '^\[chaos\]|^  CHECK (pool|heap|records|memzones)' "$log" || true
  if grep -q "SKIPPED" "$log"; then grep -A2 "Skipped" "$log" | head -5; fi
  if [ $status != 0 ]; then
    echo "--- what failed (each gtest failure, with the pods' own complaints):"
    awk '/: Failure$/ {n = 60} n > 0 {print; n--}' "$log" | grep -v -E '^  (procs|mp)/[^:]*$' | head -300
    echo "--- (the whole output: rerun with the same seed, or run $build/bin/mpod_integration_tests --gtest_filter='Chaos.*')"
    exit 1
  fi
done
