#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# `make test`: set-up, builds, host tests, KUnit and VM tests. Every check is counted; the last
# line is "N passed, N failed" and the exit status is non-zero if anything failed.
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$LCFS_ROOT"

build="$LCFS_ROOT/build"
mkdir -p "$build/logs"
results="$build/results.txt"
: >"$results"
pass=0 fail=0
t0=$(date +%s)

record() { # record ok|fail NAME [detail]
	if [ "$1" = ok ]; then
		pass=$((pass + 1)); echo "ok $2" >>"$results"
	else
		fail=$((fail + 1)); echo "not ok $2${3:+ # $3}" >>"$results"
		echo "FAILED: $2${3:+ ($3)}" >&2
	fi
}

finish() {
	echo
	echo "=== results (${results#$LCFS_ROOT/}, $(( $(date +%s) - t0 )) s) ==="
	grep '^not ok' "$results" || true
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
release_build=""
trap 'for p in $kernel_build $release_build; do kill -- -$p 2>/dev/null; done' EXIT

# --- host tests ------------------------------------------------------------------------------
log "host: cargo test"
(cd userspace && cargo test --release --workspace --no-fail-fast) >"$build/logs/cargo-test.log" 2>&1
crc=$?
n_before=$((pass + fail))
# Test names are prefixed with their crate and target ("lcfs_image/lib: tests::x").
while read -r status name; do
	if [ "$status" = ok ]; then record ok "host: $name"; else record fail "host: $name"; fi
done < <(awk '
	/^ *Running / { t = $NF; gsub(/[()]/, "", t); n = split(t, p, "/"); t = p[n]; sub(/-[0-9a-f]+$/, "", t)
		kind = ($2 == "unittests") ? "unit" : $2; sub(/^tests\//, "", kind); sub(/\.rs$/, "", kind); next }
	/^test .* \.\.\. (ok|FAILED)$/ { st = ($NF == "ok") ? "ok" : "fail"; name = $2; print st, t "/" kind ": " name }
	' "$build/logs/cargo-test.log")
if [ $crc != 0 ] && [ $((pass + fail)) = "$n_before" ]; then
	tail -30 "$build/logs/cargo-test.log" >&2
	record fail "host: cargo test" "build failed, see build/logs/cargo-test.log"
fi
step "host: clippy -D warnings" "$build/logs/clippy.log" make -s clippy
log "host: fuzzing (${LCFS_FUZZ_SECONDS:-20} s per target)"
while IFS= read -r line; do
	case "$line" in
	"ok "*) record ok "${line#ok }" ;;
	"not ok "*) record fail "${line#not ok }" ;;
	esac
done < <(scripts/fuzz.sh "${LCFS_FUZZ_SECONDS:-20}" 2>"$build/logs/fuzz.log")
grep -q '^ok fuzz: tree' "$results" || grep -q '^not ok fuzz' "$results" || record fail "fuzz: run" "see build/logs/fuzz.log"
step "host: rustfmt" "$build/logs/fmt.log" make -s fmt-check

# --- module ----------------------------------------------------------------------------------
log "build: test kernel (waiting for the background build)"
if wait $kernel_build; then
	record ok "build: test kernel"
else
	tail -30 "$build/logs/kernel.log" >&2
	record fail "build: test kernel" "see build/logs/kernel.log"
	finish
fi
LCFS_KERNEL=release setsid nice -n 19 scripts/build-kernel.sh >"$build/logs/kernel-release.log" 2>&1 &
release_build=$!
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
else
	finish
fi
step "build: guest tools (musl)" "$build/logs/guest-tools.log" make -s guest-tools || finish

# --- VM suites -------------------------------------------------------------------------------
expected_suites=$(grep -rho 'kunit_tests([a-z_0-9]*)' src | sed 's/kunit_tests(\(.*\))/\1/' | sort -u)

run_suite() { # run_suite SUITE [NAME]: NAME (default SUITE) names the run's results and logs
	local suite=$1 name=${2:-$1}
	local logf="$build/logs/$name.log" vmout="$build/logs/$name.vm"
	log "vm: suite $suite${2:+ as $name} ($LCFS_KERNEL kernel)"
	scripts/vm.sh --run "$suite" --name "$name" >"$vmout" 2>&1
	local vrc=$?
	# Guest tests.
	local got=0
	while IFS= read -r line; do
		got=1
		case "$line" in
		"LCFS-RESULT: ok "*) record ok "vm $name: ${line#LCFS-RESULT: ok }" ;;
		"LCFS-RESULT: not ok "*) record fail "vm $name: ${line#LCFS-RESULT: not ok }" ;;
		esac
	done < <(grep '^LCFS-RESULT: ' "$logf" 2>/dev/null)
	[ $got = 1 ] || record fail "vm $name: any guest result"
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
		END { for (k in r) print r[k], k }' "$logf" | sort -k2 >"$build/logs/$name.kunit"
	if [ $vrc = 0 ]; then
		record ok "vm $name: completed, kernel log clean"
	else
		grep '^VM-CHECK' -A20 "$vmout" >&2
		record fail "vm $name: completed, kernel log clean" "$(grep -m1 '^VM-CHECK' "$vmout")"
	fi
}

run_suite basic
run_suite userland
run_suite namespace
run_suite files
run_suite stress
# pjdfstest, then fsx with mmap on two seeds at once (tests/guest/posix.sh), under KASAN and
# lockdep; the long fsx runs follow on the release kernel. LCFS_FSX_OPS sets the operations per seed
# (Documentation/testing.md has the measured cost per operation under TCG).
LCFS_GUEST_ENV="FSX_OPS=${LCFS_FSX_OPS:-2000} FSX_SEEDS=1,2 FSX_PARALLEL=1" run_suite posix
# Corrupted images (LCFS_CORRUPT_COUNT mutants, generated by userspace/crates/lcfs-corrupt).
LCFS_CORRUPT_COUNT=${LCFS_CORRUPT_COUNT:-200} run_suite corrupt
# Kill-and-recover rounds (LCFS_CRASH_DELAYS; tests/guest/crash.sh).
run_suite crash

# --- release kernel: fsx at full length ----------------------------------------------------------
# 100,000 operations on each of three seeds, at once on the 2 vCPUs (LCFS_FSX_LONG_OPS,
# LCFS_FSX_LONG_SEEDS): under KASAN and lockdep an operation costs about ten times as much.
log "waiting for the release kernel build (background)"
if wait $release_build; then
	record ok "build: release kernel"
	if step "build: lcfs.ko for the release kernel" "$build/logs/module-release.log" \
		env LCFS_KERNEL=release scripts/build-module.sh; then
		if grep -E -q 'warning|error' "$build/logs/module-release.log"; then
			grep -E -A5 'warning|error' "$build/logs/module-release.log" | sed -n 1,40p >&2
			record fail "build: lcfs.ko for the release kernel without warnings"
		else
			record ok "build: lcfs.ko for the release kernel without warnings"
		fi
		LCFS_KERNEL=release LCFS_GUEST_ENV="POSIX_PARTS=fsx FSX_OPS=${LCFS_FSX_LONG_OPS:-100000} FSX_SEEDS=${LCFS_FSX_LONG_SEEDS:-1,2,3} FSX_PARALLEL=1" \
			run_suite posix fsx-release
	fi
else
	tail -30 "$build/logs/kernel-release.log" >&2
	record fail "build: release kernel" "see build/logs/kernel-release.log"
fi
trap - EXIT

# More suites on request, e.g. LCFS_SUITES="posix" with LCFS_GUEST_ENV="FS=ext4" for the reference
# counts on ext4 (see tests/guest/posix.sh).
for s in ${LCFS_SUITES:-}; do run_suite "$s"; done

# KUnit runs whenever a suite loads the module: count each case once over all runs (a failure in
# any run wins), and require every suite of the source to have reported.
cat "$build"/logs/*.kunit 2>/dev/null | sort -k2,2 -k1,1 | awk '!seen[$2]++' >"$build/logs/kunit.all"
while read -r st name; do record "$st" "kunit: $name"; done <"$build/logs/kunit.all"
for s in $expected_suites; do
	grep -q " $s\." "$build/logs/kunit.all" || record fail "kunit: suite $s ran" "no KTAP results in any guest log"
done
finish
