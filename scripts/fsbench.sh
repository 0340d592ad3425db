#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs the guest filesystem benchmark (tests/guest/fsbench.sh: fio, a metadata workload and small
# appends on ext4 and lcfs, same virtual disk, same guest, in interleaved rounds) and prints a
# Markdown table:
# per test the median of each filesystem's results, the lcfs/ext4 ratio of every round (each
# round's two runs are back to back) and the median of those ratios.
# Not a test: nothing passes or fails on the numbers. Guest settings via LCFS_GUEST_ENV, e.g.
# "FILES=20000 SIZE=128m RUNTIME=10 ROUNDS=5 APPENDS=200000 GROUPS=meta,append". It runs on the
# release kernel (LCFS_KERNEL, default release): KASAN and lockdep would weigh on the two
# filesystems' code paths unequally.
set -euo pipefail
export LCFS_KERNEL=${LCFS_KERNEL:-release}
. "$(dirname "$0")/env.sh"

# The kernel (built once, cached) and lcfs.ko for it.
"$LCFS_ROOT/scripts/build-module.sh" >/dev/null

disk=${LCFS_BENCH_DISK:-2G}
log "benchmark on the $LCFS_KERNEL kernel"
# Where scripts/vm.sh puts the logs; the first run of a clone has no logs directory yet.
build=${LCFS_VM_BUILD:-$LCFS_ROOT/build}
mkdir -p "$build/logs"
"$LCFS_ROOT/scripts/vm.sh" --run fsbench --disk "$disk" >"$build/logs/fsbench.out" 2>&1 ||
	die "benchmark run failed; see ${build#$LCFS_ROOT/}/logs/fsbench.out"
grep -q '^LCFS-RESULT: ok ' "$build/logs/fsbench.log" ||
	die "the benchmark did not complete; see ${build#$LCFS_ROOT/}/logs/fsbench.log"
awk '
	function median(list,    v, n, i, j, t) {
		n = split(list, v, " ")
		for (i = 2; i <= n; i++)
			for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	/^BENCH / {
		delete f
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		key = f["test"] SUBSEP f["round"]
		val[f["fs"], key] = f["value"]; unit[f["test"]] = f["unit"]
		if (!(f["round"] in seen)) { seen[f["round"]] = 1; rounds[++nr] = f["round"] }
	}
	END {
		print "| test | unit | ext4 (median) | lcfs (median) | lcfs / ext4 per round | median ratio |"
		print "|------|------|-----:|-----:|------|-----:|"
		nt = split("seq-write seq-read rand-write rand-read create stat unlink append overwrite", tests, " ")
		for (t = 1; t <= nt; t++) {
			e = l = r = rs = ""
			for (k = 1; k <= nr; k++) {
				key = tests[t] SUBSEP rounds[k]
				if (!((("ext4", key) in val) && (("lcfs", key) in val))) continue
				ev = val["ext4", key]; lv = val["lcfs", key]
				e = e " " ev; l = l " " lv
				q = ev > 0 ? lv / ev : 0
				r = r " " q; rs = rs (rs == "" ? "" : ", ") sprintf("%.2f", q)
			}
			if (r == "") { printf "| %s | - | missing | missing | - | - |\n", tests[t]; continue }
			printf "| %s | %s | %d | %d | %s | %.2f |\n", tests[t], unit[tests[t]], median(e), median(l), rs, median(r)
		}
	}' "$build/logs/fsbench.log"
