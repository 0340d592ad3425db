#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs the layer benchmark (tests/guest/layerbench.sh: layer operations on lcfs, btrfs and
# overlayfs on one virtual disk in one guest) on the release kernel and prints a Markdown table:
# per operation and size, each filesystem's median time (or space) and lcfs's ratio to the
# others. Not a test: nothing passes or fails on the numbers. Guest settings via LCFS_GUEST_ENV,
# e.g. "SIZES=1000,100000,1000000 BIG_MB=1024".
set -euo pipefail
export LCFS_KERNEL=${LCFS_KERNEL:-release}
. "$(dirname "$0")/env.sh"

"$LCFS_ROOT/scripts/build-module.sh" >/dev/null
disk=${LCFS_BENCH_DISK:-4G}
log "layer benchmark on the $LCFS_KERNEL kernel"
# Where scripts/vm.sh puts the logs; the first run of a clone has no logs directory yet.
build=${LCFS_VM_BUILD:-$LCFS_ROOT/build}
mkdir -p "$build/logs"
"$LCFS_ROOT/scripts/vm.sh" --run layerbench --disk "$disk" >"$build/logs/layerbench.out" 2>&1 ||
	die "benchmark run failed; see ${build#$LCFS_ROOT/}/logs/layerbench.out"
grep -q '^LCFS-RESULT: ok ' "$build/logs/layerbench.log" ||
	die "the benchmark did not complete; see ${build#$LCFS_ROOT/}/logs/layerbench.log"
awk '
	/^BENCH / {
		delete f
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		key = f["test"] " | " f["n"]
		if (!(key in seen)) { seen[key] = 1; order[++nk] = key; unit[key] = f["unit"] }
		val[key, f["fs"]] = f["value"]
	}
	function cell(k, fs) { return ((k, fs) in val) ? sprintf("%.3f", val[k, fs]) : "-" }
	function ratio(k, fs) {
		if (!((k, "lcfs") in val) || !((k, fs) in val) || val[k, "lcfs"] == 0) return "-"
		return sprintf("%.1fx", val[k, fs] / val[k, "lcfs"])
	}
	END {
		print "| operation | size | unit | lcfs | btrfs | overlay | ext4 | btrfs / lcfs | overlay / lcfs | ext4 / lcfs |"
		print "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= nk; i++) {
			k = order[i]
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k, unit[k], cell(k, "lcfs"), cell(k, "btrfs"),
				cell(k, "overlay"), cell(k, "ext4"), ratio(k, "btrfs"), ratio(k, "overlay"), ratio(k, "ext4")
		}
	}' "$build/logs/layerbench.log"
