#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# `make test` and `make soak`: set-up, builds, host tests, KUnit and VM tests. Every check is
# counted; the last line is "N passed, N failed" and the exit status is non-zero if anything failed.
#
#   SUITES="host posix ..."  run only these groups (default: all but fsx-release): host (cargo
#                            test, clippy, rustfmt, make install), fuzz, the guest suites basic
#                            userland namespace files layers share containerd containerd-crash stress
#                            posix corrupt crash, and fsx-release (long fsx runs on the release
#                            kernel, which takes a kernel build of its own).
#                            Set-up and the module builds always run; KUnit runs with any guest
#                            suite but crash.
#   LCFS_SOAK=1              `make soak`: the long forms (Documentation/testing.md); default
#                            groups fuzz layers containerd stress posix corrupt crash fsx-release.
#
# Besides each test's own verdict, the run fails when a guest suite's plan and results disagree
# (scripts/guest-results.awk), when a cargo test binary reported fewer tests than it announced,
# and when a group of tests counts fewer than its floor in tests/expected-counts (this run's
# counts are written to build/counts.txt in the same format).
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$LCFS_ROOT"

build="$LCFS_ROOT/build"
mkdir -p "$build/logs"
results="$build/results.txt"
: >"$results"
pass=0 fail=0 harness=0
t0=$(date +%s)

soak=${LCFS_SOAK:-0}
all_groups="host fuzz basic userland namespace files layers share containerd containerd-crash stress posix corrupt crash fsx-release"
# fsx on the release kernel is a long form: make test has fsx on the debug kernel (posix, layers).
if [ "$soak" = 1 ]; then default_groups="fuzz layers share containerd stress posix corrupt crash fsx-release"; else default_groups=${all_groups% fsx-release}; fi
groups=${SUITES:-$default_groups}
for g in $groups; do
	case " $all_groups " in *" $g "*) ;; *) die "unknown group '$g' in SUITES (groups: $all_groups)" ;; esac
done
selected() { case " $groups " in *" $1 "*) return 0 ;; esac; return 1; }
# KUnit runs at every module load of a guest suite, except in the crash rounds' boots.
kunit_selected() {
	local g
	for g in basic namespace files layers share stress posix corrupt fsx-release; do
		! selected "$g" || return 0
	done
	return 1
}

# The short forms (make test) and the long ones (make soak); each LCFS_* variable overrides.
if [ "$soak" = 1 ]; then
	fuzz_seconds=${LCFS_FUZZ_SECONDS:-120} fsx_ops=${LCFS_FSX_OPS:-10000}
	fsx_long_ops=${LCFS_FSX_LONG_OPS:-100000} corrupt_count=${LCFS_CORRUPT_COUNT:-600}
	crash_delays=${LCFS_CRASH_DELAYS:-0 1 2 3 5 8} stress_seconds=${LCFS_STRESS_SECONDS:-120}
	layers_fsx_ops=${LCFS_LAYERS_FSX_OPS:-10000} conformance_reference=${LCFS_CONFORMANCE_REFERENCE:-.}
	conformance_cases=${LCFS_CONFORMANCE_CASES:-.}
	share_fsx_ops=${LCFS_SHARE_FSX_OPS:-10000} containers=${LCFS_CONTAINERS:-20}
else
	fuzz_seconds=${LCFS_FUZZ_SECONDS:-10} fsx_ops=${LCFS_FSX_OPS:-2000}
	fsx_long_ops=${LCFS_FSX_LONG_OPS:-6000} corrupt_count=${LCFS_CORRUPT_COUNT:-40}
	crash_delays=${LCFS_CRASH_DELAYS:-0 8} stress_seconds=${LCFS_STRESS_SECONDS:-12}
	layers_fsx_ops=${LCFS_LAYERS_FSX_OPS:-600} conformance_reference=${LCFS_CONFORMANCE_REFERENCE-}
	conformance_cases=${LCFS_CONFORMANCE_CASES:-^[^1]}
	share_fsx_ops=${LCFS_SHARE_FSX_OPS:-1000} containers=${LCFS_CONTAINERS:-6}
fi

record() { # record ok|fail NAME [detail]
	if [ "$1" = ok ]; then
		pass=$((pass + 1)); echo "ok $2" >>"$results"
	else
		fail=$((fail + 1)); echo "not ok $2${3:+ # $3}" >>"$results"
		echo "FAILED: $2${3:+ ($3)}" >&2
	fi
}

# Checks of the harness's own prerequisites (the Debian tools in the guest, ...): a failure fails
# the run, a pass is not a test of LCFS and is not counted as one.
record_harness() { # record_harness ok|fail NAME [detail]
	if [ "$1" = ok ]; then
		harness=$((harness + 1)); echo "harness ok $2" >>"$results"
	else
		record fail "harness: $2" "${3:-}"
	fi
}

# Floors: every group that ran counts at least its floor in tests/expected-counts, and every group
# that ran has one. A group's name is its results' prefix ("vm basic", "host lcfs_image/data",
# "kunit lcfs_core", "fuzz", "build"); it ran when its selection (host, fuzz, the suite, any
# KUnit-loading suite) did.
check_counts() {
	awk '
		/^ok / || /^not ok / {
			line = $0; sub(/^(ok|not ok) /, "", line); sub(/ # .*/, "", line)
			if (line ~ /^vm [^:]*:/) { g = line; sub(/:.*/, "", g) }
			else if (line ~ /^host: [^:]*:/) { g = line; sub(/^host: /, "", g); sub(/:.*/, "", g); g = "host " g }
			else if (line ~ /^kunit: /) { g = line; sub(/^kunit: /, "", g); sub(/\..*/, "", g); g = "kunit " g }
			else { g = line; sub(/:.*/, "", g) }
			if (g == "count" || g == "harness") next
			c[g]++
		}
		END { for (g in c) print g, c[g] }' "$results" | sort >"$build/counts.txt"
	local group floor have sel
	while read -r line; do
		case "$line" in "" | "#"*) continue ;; esac
		floor=${line##* } group=${line% *}
		case "$group" in
		host | "host "* | selftest | install) sel=host ;; fuzz) sel=fuzz ;; "vm "*) sel=${group#vm } ;; build-release) sel=fsx-release ;;
		"kunit "*) sel=kunit ;; *) sel=always ;;
		esac
		case "$sel" in always) ;; kunit) kunit_selected || continue ;; *) selected "$sel" || continue ;; esac
		have=$(awk -v g="$group" '{ n = $NF; sub(/ [0-9]+$/, "") } $0 == g { print n }' "$build/counts.txt")
		if [ "${have:-0}" -lt "$floor" ]; then
			record fail "count: $group" "${have:-0} tests, the floor is $floor (tests/expected-counts)"
		fi
	done <"$LCFS_ROOT/tests/expected-counts"
	while read -r line; do
		group=${line% *}
		grep -q "^$group [0-9]*\$" "$LCFS_ROOT/tests/expected-counts" ||
			record fail "count: $group" "no floor in tests/expected-counts (build/counts.txt has this run's counts)"
	done <"$build/counts.txt"
}

finish() {
	check_counts
	echo
	echo "=== results (${results#$LCFS_ROOT/}, $(( $(date +%s) - t0 )) s) ==="
	grep '^not ok' "$results" || true
	[ "$harness" = 0 ] || echo "$harness harness self-checks passed (not counted)"
	echo "$pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}

step() { # step NAME LOGFILE COMMAND...: run, record, keep the log
	local name=$1 logf=$2; shift 2
	log "$name"
	if "$@" >"$logf" 2>&1; then record ok "$name"; return 0; fi
	tail -30 "$logf" >&2
	record fail "$name" "see ${logf#$LCFS_ROOT/}"
	return 1
}

# --- set-up and builds -----------------------------------------------------------------------
step "setup: toolchain and kernel source" "$build/logs/setup.log" scripts/setup.sh || finish
sed 's/^/    /' "$LCFS_CACHE/versions.txt" >&2
# Both guest kernels build in the background (nothing to do when cached), each in a process group
# of its own (setsid) so that an early exit stops it; an unfinished build directory is redone by the
# next run. The test kernel first, at normal priority, while the host tests, which do not need it,
# run; then the release kernel (no debugging instrumentation; the long fsx runs) at nice 19, on the
# CPU time that the mostly single-threaded guest suites leave idle. Each is waited for before the
# first step that needs it.
setsid scripts/build-kernel.sh >"$build/logs/kernel.log" 2>&1 &
kernel_build=$!
release_build="" rootfs_build=""
# The Debian root filesystem too (most guest suites need it): on a new machine it is mostly
# package downloads and unpacking, which the builds above leave room for.
needs_rootfs=0
for g in $groups; do
	[ "$g" != fsx-release ] || g=posix
	! grep -q '^# lcfs-needs: debian-root' "tests/guest/$g.sh" 2>/dev/null || needs_rootfs=1
done
if [ $needs_rootfs = 1 ]; then
	setsid scripts/mkrootfs.sh >/dev/null 2>"$build/logs/rootfs.log" &
	rootfs_build=$!
fi
trap 'for p in $kernel_build $release_build $rootfs_build; do kill -- -$p 2>/dev/null; done' EXIT

# --- host tests ------------------------------------------------------------------------------
# The harness's own verdicts first: everything after relies on them.
if selected host; then
	while IFS= read -r line; do
		case "$line" in
		"ok "*) record ok "${line#ok }" ;;
		"not ok "*) record fail "${line#not ok }" ;;
		esac
	done < <(scripts/harness-selftest.sh)
fi
step "build: guest tools (musl)" "$build/logs/guest-tools.log" make -s guest-tools || finish
# The rest of the host checks (scripts/host-tests.sh) run in the background at nice 10, beside the
# kernel build and then the guest suites: those are mostly single-threaded, and the cargo builds
# run on the CPU time they leave. The guest tools are built first: they share cargo's build
# directory lock with the host job. Its results are counted when the guest suites are done.
module_done="$build/module.done"
rm -f "$module_done"
host_job=""
if selected host || selected fuzz; then
	host_env=(HOST_TESTS=0 MODULE_DONE="$module_done")
	! selected host || host_env[0]=HOST_TESTS=1
	! selected fuzz || host_env+=(FUZZ_SECONDS="$fuzz_seconds")
	env "${host_env[@]}" setsid nice -n 10 scripts/host-tests.sh >"$build/host-results.txt" &
	host_job=$!
fi
trap 'for p in $kernel_build $release_build $rootfs_build $host_job; do kill -- -$p 2>/dev/null; done' EXIT

# --- module ----------------------------------------------------------------------------------
log "build: test kernel (waiting for the background build)"
if wait $kernel_build; then
	record ok "build: test kernel"
else
	tail -30 "$build/logs/kernel.log" >&2
	record fail "build: test kernel" "see build/logs/kernel.log"
	echo failed >"$module_done"
	finish
fi
if selected fsx-release; then
	LCFS_KERNEL=release setsid nice -n 19 scripts/build-kernel.sh >"$build/logs/kernel-release.log" 2>&1 &
	release_build=$!
fi
if step "build: lcfs.ko" "$build/logs/module.log" make -s module; then
	if grep -E -q 'warning|error' "$build/logs/module.log"; then
		grep -E -A5 'warning|error' "$build/logs/module.log" | sed -n 1,40p >&2
		record fail "build: lcfs.ko without compiler warnings"
	else
		record ok "build: lcfs.ko without compiler warnings"
	fi
	# All unsafe code stays in the VFS layer.
	if grep -n 'unsafe' src/fs.rs src/fs/*.rs src/format/*.rs | grep -v -E 'forbid\(unsafe_code\)|deny\(unsafe_code\)|^\S+:\s*//'; then
		record fail "source: unsafe only in src/vfs"
	else
		record ok "source: unsafe only in src/vfs"
	fi
	echo ok >"$module_done"
else
	echo failed >"$module_done"
	finish
fi
# --- VM suites -------------------------------------------------------------------------------
expected_suites=$(grep -rho 'kunit_tests([a-z_0-9]*)' src | sed 's/kunit_tests(\(.*\))/\1/' | sort -u)

run_suite() { # run_suite SUITE [NAME]: NAME (default SUITE) names the run's results and logs
	local suite=$1 name=${2:-$1}
	local logf="$build/logs/$name.log" vmout="$build/logs/$name.vm"
	log "vm: suite $suite${2:+ as $name} ($LCFS_KERNEL kernel)"
	rm -f "$logf"
	scripts/vm.sh --run "$suite" --name "$name" >"$vmout" 2>&1
	local vrc=$?
	# Guest tests, checked against the suite's plan (vm.sh fails the run on a mismatch too; here
	# each missing or unknown test is a failure of its own).
	while read -r what arg; do
		case "$what" in
		ok) ${rec:-record} ok "vm $name: $arg" ;;
		fail) ${rec:-record} fail "vm $name: $arg" ;;
		missing) record fail "vm $name: $arg" "planned, no result: the suite stopped early" ;;
		unplanned) record fail "vm $name: $arg" "reported, not in the suite's plan" ;;
		twice) record fail "vm $name: $arg" "reported more than once" ;;
		noplan) record fail "vm $name: plan" "no LCFS-PLAN line: the suite did not start" ;;
		exit) record fail "vm $name: suite script exit status" "$arg" ;;
		esac
	done < <(awk -f scripts/guest-results.awk "$logf" 2>/dev/null)
	# A failed guest test's output follows its result line; CI shows only this script's output.
	awk '/^LCFS-RESULT: not ok / { show = 1; print; next }
		show && /^    \| / { print; next } { show = 0 }' "$logf" 2>/dev/null | sed -n 1,80p >&2
	# KUnit cases (KTAP on the console at module load); one result per case, worst wins.
	awk '
		/# Subtest: / { suite = $NF; next }
		/^[ \t]+(ok|not ok) [0-9]+ / {
			line = $0; sub(/^[ \t]+/, "", line)
			st = (line ~ /^ok/) ? "ok" : "fail"
			sub(/^(ok|not ok) [0-9]+ /, "", line); sub(/ #.*/, "", line)
			if (suite ~ /^lcfs_/) { key = suite "." line; if (!(key in r) || st == "fail") r[key] = st }
		}
		END { for (k in r) print r[k], k }' "$logf" 2>/dev/null | sort -k2 >"$build/logs/$name.kunit"
	if [ $vrc = 0 ]; then
		${rec:-record} ok "vm $name: completed, kernel log clean"
	else
		grep '^VM-CHECK' -A20 "$vmout" >&2
		record fail "vm $name: completed, kernel log clean" "$(grep -m1 '^VM-CHECK' "$vmout")"
	fi
}

rm -f "$build"/logs/*.kunit
if [ -n "$rootfs_build" ]; then
	log "build: Debian root filesystem (waiting for the background build)"
	if wait $rootfs_build; then
		record ok "build: Debian root filesystem"
	else
		tail -30 "$build/logs/rootfs.log" >&2
		record fail "build: Debian root filesystem" "see build/logs/rootfs.log"
		finish
	fi
fi
# The Debian userland other suites use: a harness self-check, not a test of LCFS.
! selected userland || rec=record_harness run_suite userland
for s in basic namespace files; do ! selected $s || run_suite $s; done
! selected layers || LCFS_GUEST_ENV="LAYERS_FSX_OPS=$layers_fsx_ops" run_suite layers
# Page-cache sharing between clones, and copy-on-write of the cache (tests/guest/share.sh).
! selected share || LCFS_GUEST_ENV="SHARE_FSX_OPS=$share_fsx_ops" run_suite share
# Real containers through containerd, runc and containerd-lcfs-grpc (the guest boots into Debian),
# and beside them containerd's snapshotter test suite against containerd-lcfs-grpc and overlayfs.
! selected containerd || LCFS_GUEST_ENV="CONTAINERS=$containers CONFORMANCE_CASES=$conformance_cases${conformance_reference:+ CONFORMANCE_REFERENCE=$conformance_reference}" run_suite containerd
# The VM killed during container churn, then containerd and the daemon restarted on the disk.
! selected containerd-crash || run_suite containerd-crash
! selected stress || LCFS_GUEST_ENV="STRESS_SECONDS=$stress_seconds" run_suite stress
# pjdfstest, then fsx with mmap on two seeds at once (tests/guest/posix.sh), under KASAN and
# lockdep; the longer fsx runs follow on the release kernel. Documentation/testing.md has the
# measured cost per operation under TCG.
! selected posix || LCFS_GUEST_ENV="FSX_OPS=$fsx_ops FSX_SEEDS=1,2 FSX_PARALLEL=1" run_suite posix
# Corrupted images (generated by userspace/crates/lcfs-corrupt).
! selected corrupt || LCFS_CORRUPT_COUNT=$corrupt_count run_suite corrupt
# Kill-and-recover rounds, one per delay (tests/guest/crash.sh).
! selected crash || LCFS_CRASH_DELAYS=$crash_delays run_suite crash

# --- release kernel: fsx ----------------------------------------------------------------------
# Three seeds at once on the 2 vCPUs, on the kernel without KASAN and lockdep, where an operation
# costs about a tenth as much.
if selected fsx-release; then
	log "waiting for the release kernel build (background)"
	if wait $release_build; then
		record ok "build-release: release kernel"
		if step "build-release: lcfs.ko for the release kernel" "$build/logs/module-release.log" \
			env LCFS_KERNEL=release scripts/build-module.sh; then
			if grep -E -q 'warning|error' "$build/logs/module-release.log"; then
				grep -E -A5 'warning|error' "$build/logs/module-release.log" | sed -n 1,40p >&2
				record fail "build-release: lcfs.ko for the release kernel without warnings"
			else
				record ok "build-release: lcfs.ko for the release kernel without warnings"
			fi
			LCFS_KERNEL=release LCFS_GUEST_ENV="POSIX_PARTS=fsx FSX_OPS=$fsx_long_ops FSX_SEEDS=${LCFS_FSX_LONG_SEEDS:-1,2,3} FSX_PARALLEL=1" \
				run_suite posix fsx-release
		fi
	else
		tail -30 "$build/logs/kernel-release.log" >&2
		record fail "build-release: release kernel" "see build/logs/kernel-release.log"
	fi
fi
if [ -n "$host_job" ]; then
	log "host: waiting for the host checks (background)"
	wait $host_job
	while IFS= read -r line; do
		case "$line" in
		"ok "*) record ok "${line#ok }" ;;
		"not ok "*) name=${line#not ok }; record fail "${name%% # *}" "$(case "$name" in *" # "*) echo "${name#* # }" ;; esac)" ;;
		esac
	done <"$build/host-results.txt"
	grep -q '^ok host: rustfmt\|^not ok host: rustfmt' "$build/host-results.txt" || ! selected host ||
		record fail "host: checks completed" "scripts/host-tests.sh stopped early, see its output above"
fi
trap - EXIT

# KUnit runs whenever a suite loads the module: count each case once over all runs (a failure in
# any run wins), and require every suite of the source to have reported.
cat "$build"/logs/*.kunit 2>/dev/null | sort -k2,2 -k1,1 | awk '!seen[$2]++' >"$build/logs/kunit.all"
while read -r st name; do record "$st" "kunit: $name"; done <"$build/logs/kunit.all"
if kunit_selected; then
	for s in $expected_suites; do
		grep -q " $s\." "$build/logs/kunit.all" || record fail "kunit: suite $s ran" "no KTAP results in any guest log"
	done
fi
finish
