#!/usr/bin/env bash
# Installs what mpod needs to build and test, from Debian packages, when missing.
# Safe to run again. Needs root (or sudo) only when something is missing.
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v unshare >/dev/null || need+=(util-linux)
[ -e /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
[ -e /usr/include/benchmark/benchmark.h ] || need+=(libbenchmark-dev)
command -v clang++ >/dev/null || need+=(clang)
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null || need+=(libclang-rt-dev)

# DPDK 22.11 is only the reference the benchmarks compare against: wanted, not required.
want=()
pkg-config --exists libdpdk 2>/dev/null || want+=(libdpdk-dev dpdk)

if [ ${#need[@]} -eq 0 ] && [ ${#want[@]} -eq 0 ]; then exit 0; fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    [ ${#need[@]} -eq 0 ] && exit 0
    echo "deps.sh: missing packages ${need[*]} and not root; install them or rerun as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || echo "deps.sh: apt-get update failed; trying with the package lists we have" >&2
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ${#want[@]} -gt 0 ]; then
  $SUDO apt-get install -y -qq "${want[@]}" >/dev/null ||
    echo "deps.sh: could not install ${want[*]}; benchmarks will run without the DPDK comparison" >&2
fi
