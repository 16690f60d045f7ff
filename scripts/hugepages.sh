#!/usr/bin/env bash
# Reserves 2 MB hugepages and mounts hugetlbfs at /dev/hugepages, when root.
# Without root this only reports; tests that need hugepages then skip with a reason.
set -uo pipefail
want=${MPOD_HUGEPAGES:-256}
if [ "$(id -u)" -ne 0 ]; then
  echo "hugepages.sh: not root; hugepage tests will skip unless hugepages are already set up"
  exit 0
fi
have=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ "$have" -lt "$want" ]; then
  echo "$want" > /proc/sys/vm/nr_hugepages 2>/dev/null || echo "hugepages.sh: cannot set nr_hugepages"
fi
mkdir -p /dev/hugepages
if ! grep -qs " /dev/hugepages hugetlbfs " /proc/mounts; then
  mount -t hugetlbfs nodev /dev/hugepages || echo "hugepages.sh: cannot mount hugetlbfs at /dev/hugepages"
fi
echo "hugepages.sh: $(grep -E 'HugePages_(Total|Free)' /proc/meminfo | tr -s ' ' | paste -sd' ')"
