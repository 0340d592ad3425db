#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs the guest filesystem benchmark (tests/guest/fsbench.sh: fio and a metadata workload on
# ext4 and lcfs, same virtual disk, same guest) and prints a Markdown table of lcfs/ext4 ratios.
# Not a test: nothing passes or fails on the numbers. Guest settings via LCFS_GUEST_ENV, e.g.
# "FILES=20000 SIZE=128m RUNTIME=10". It runs on the release kernel (LCFS_KERNEL, default release):
# KASAN and lockdep would weigh on the two filesystems' code paths unequally.
set -euo pipefail
export LCFS_KERNEL=${LCFS_KERNEL:-release}
. "$(dirname "$0")/env.sh"

# The kernel (built once, cached) and lcfs.ko for it.
"$LCFS_ROOT/scripts/build-module.sh" >/dev/null

disk=${LCFS_BENCH_DISK:-2G}
log "benchmark on the $LCFS_KERNEL kernel"
"$LCFS_ROOT/scripts/vm.sh" --run fsbench --disk "$disk" >"$LCFS_ROOT/build/logs/fsbench.out" 2>&1 ||
	die "benchmark run failed; see build/logs/fsbench.out"
log="$LCFS_ROOT/build/logs/fsbench.log"
echo "| test | unit | ext4 | lcfs | lcfs / ext4 |"
echo "|------|------|-----:|-----:|------------:|"
for t in seq-write seq-read rand-write rand-read create stat unlink; do
	e=$(sed -n "s/^BENCH fs=ext4 test=$t value=\([0-9]*\) unit=\(.*\)$/\1 \2/p" "$log")
	l=$(sed -n "s/^BENCH fs=lcfs test=$t value=\([0-9]*\) unit=.*$/\1/p" "$log")
	[ -n "$e" ] && [ -n "$l" ] || { echo "| $t | - | missing | missing | - |"; continue; }
	awk -v t="$t" -v e="${e% *}" -v u="${e#* }" -v l="$l" \
		'BEGIN { printf "| %s | %s | %d | %d | %.2f |\n", t, u, e, l, (e > 0 ? l / e : 0) }'
done
