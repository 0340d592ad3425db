#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs the containerd benchmark (tests/guest/containerdbench.sh: the lcfs snapshotter beside
# containerd's overlayfs, native and btrfs snapshotters, each on the same virtual disk in turn, in
# one guest) on the release kernel, prints a Markdown table (per operation each snapshotter's time
# and the others' ratio to lcfs's) and draws the times as a chart, build/containerdbench.svg.
# Not a test: nothing passes or fails on the numbers. `--report LOG` makes the table and the
# chart again from a run's console log (build/logs/containerdbench.log, or under
# LCFS_VM_BUILD as for scripts/vm.sh); the guest prints every result as it is measured, so the
# log of a run cut short still holds those it finished.
#
# Settings, from the environment into the guest: CHURN_N (snapshotter-level iterations and
# containers per mode, default 100, which takes an estimated 75 minutes under TCG; a run with 20
# took about 20), CHURN_COMMIT_N, CHURN_RUN_N, IMPORT_REPEAT, CTR_NOOP_N, PARALLEL, SNAPSHOTTERS
# (tests/guest/containerdbench.py); or any of them in LCFS_GUEST_ENV.
set -euo pipefail
export LCFS_KERNEL=${LCFS_KERNEL:-release}
. "$(dirname "$0")/env.sh"

command -v gnuplot >/dev/null || die "gnuplot not found: run scripts/setup.sh (gnuplot-nox)"
# Where scripts/vm.sh puts the guest tools and the logs.
build=${LCFS_VM_BUILD:-$LCFS_ROOT/build}
mkdir -p "$build/logs"
logf="$build/logs/containerdbench.log"
# --report LOG: only the table and the chart, from the console log of an earlier run.
if [ "${1:-}" = --report ]; then
	logf=${2:?usage: $0 [--report LOG]}
	[ -f "$logf" ] || die "no log $logf"
	grep -q '^LCFS-RESULT: ok ' "$logf" ||
		log "the benchmark did not complete: only the results measured before it stopped"
elif [ $# -gt 0 ]; then
	# Settings come from the environment: "CHURN_N=20" as an argument would be ignored.
	die "usage: [SETTING=VALUE...] $0 [--report LOG]"
else
	"$LCFS_ROOT/scripts/build-module.sh" >/dev/null
	[ -x "$build/guest/containerd-lcfs-grpc" ] || die "guest tools not built (make guest-tools)"
	# The settings checked as the guest checks them, so that a bad one fails before the boot; an
	# empty one is left to the guest's default.
	env_args=()
	for v in CHURN_N CHURN_COMMIT_N CHURN_RUN_N IMPORT_REPEAT CTR_NOOP_N PARALLEL; do
		[ -n "${!v:-}" ] || continue
		[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
		env_args+=(--env "$v=${!v}")
	done
	if [ -n "${SNAPSHOTTERS:-}" ]; then
		# The extra comma keeps a trailing empty name, which read would drop.
		IFS=, read -ra sns <<<"$SNAPSHOTTERS,"
		for s in "${sns[@]}"; do
			[[ $s =~ ^(lcfs|overlayfs|native|btrfs)$ ]] ||
				die "SNAPSHOTTERS must be some of lcfs,overlayfs,native,btrfs, not '$SNAPSHOTTERS'"
		done
		env_args+=(--env "SNAPSHOTTERS=$SNAPSHOTTERS")
	fi
	# 8 GiB: the native snapshotter copies the image (about 170 MB) for every snapshot, and
	# btrfs wants room for its chunks; the file is sparse.
	disk=${LCFS_BENCH_DISK:-8G}
	log "containerd benchmark on the $LCFS_KERNEL kernel"
	# A run that fails before the guest boots must not leave an earlier run's log to report.
	rm -f "$logf"
	"$LCFS_ROOT/scripts/vm.sh" --run containerdbench --disk "$disk" ${env_args[@]+"${env_args[@]}"} \
		>"$build/logs/containerdbench.out" 2>&1 ||
		die "benchmark run failed; see ${build#$LCFS_ROOT/}/logs/containerdbench.out" \
			"(the results it measured: $0 --report $logf)"
	grep -q '^LCFS-RESULT: ok ' "$logf" || die "the benchmark did not complete; see $logf"
fi

# The results, one line per operation: name, unit, count, then lcfs's, overlayfs's, native's and
# btrfs's values ("-" where missing), in the order the guest printed them.
data="$build/containerdbench.dat"
awk '
	/^BENCH / {
		delete f
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		# A line cut by a kernel message on the console is left out.
		if (f["test"] == "" || f["fs"] == "" || f["n"] !~ /^[0-9]+$/ ||
		    f["value"] !~ /^[0-9]+(\.[0-9]+)?$/ || f["unit"] !~ /^(s|ms)$/) next
		t = f["test"]
		if (!(t in seen)) { seen[t] = 1; order[++nt] = t; unit[t] = f["unit"]; n[t] = f["n"] }
		val[t, f["fs"]] = f["value"]
	}
	END {
		ns = split("lcfs overlayfs native btrfs", fs, " ")
		for (i = 1; i <= nt; i++) {
			t = order[i]
			printf "%s %s %s", t, unit[t], n[t]
			for (j = 1; j <= ns; j++) printf " %s", ((t, fs[j]) in val) ? val[t, fs[j]] : "-"
			printf "\n"
		}
	}' "$logf" >"$data"
[ -s "$data" ] || die "no results in $logf"

awk '
	function cell(v) { return v == "-" ? "-" : sprintf(v < 100 ? "%.2f" : "%.0f", v) }
	function ratio(v, l) { return (v == "-" || l == "-" || l == 0) ? "-" : sprintf(v / l < 1 ? "%.2fx" : "%.1fx", v / l) }
	BEGIN {
		print "| operation | unit | n | lcfs | overlayfs | native | btrfs | overlayfs / lcfs | native / lcfs | btrfs / lcfs |"
		print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	}
	{
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, cell($4), cell($5),
			cell($6), cell($7), ratio($5, $4), ratio($6, $4), ratio($7, $4)
	}' "$data"

# The chart: time per operation for each snapshotter, on a log scale (the operations span from
# a millisecond to a minute). Seconds are drawn as milliseconds.
chart="$build/containerdbench.svg"
awk '{ k = $2 == "s" ? 1000 : 1; printf "%s", $1; for (i = 4; i <= 7; i++) printf " %s", $i == "-" ? "-" : $i * k; printf "\n" }' \
	"$data" >"$data.ms"
gnuplot <<GP
set terminal svg size 960,480 dynamic font "sans,12" background "white"
set output "$chart"
set title "containerd snapshotters: time per operation (ms, log scale; lower is better)"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set logscale y
set yrange [0.1:*]
set grid ytics mytics
set xtics rotate by -30 noenhanced
set key outside right top
plot "$data.ms" using 2:xtic(1) title "lcfs", "" using 3 title "overlayfs", "" using 4 title "native", "" using 5 title "btrfs"
GP
log "chart: ${chart#$LCFS_ROOT/}"
