#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Bounded fuzzing of the format core's decoders and tree operations (cargo-fuzz, libFuzzer).
#   scripts/fuzz.sh [SECONDS]   run every target for SECONDS (default 20) each
# Prints one "ok|not ok fuzz: TARGET ..." line per target; exits non-zero on any crash.
# The stable toolchain builds the targets without sanitizers (-s none; RUSTC_BOOTSTRAP for the
# flags cargo-fuzz passes); the code under test has no unsafe, and overflow checks stay on.
set -uo pipefail
. "$(dirname "$0")/env.sh"
secs=${1:-20}
cd "$LCFS_ROOT/userspace/fuzz"
if ! command -v cargo-fuzz >/dev/null; then
	cargo install --locked --quiet --root "$LCFS_CACHE/tools" cargo-fuzz --version 0.13.2 >&2 || exit 1
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none --release --debug-assertions >&2 2>"$LCFS_ROOT/build/logs/fuzz-build.log" ||
	{ tail -20 "$LCFS_ROOT/build/logs/fuzz-build.log" >&2; echo "not ok fuzz: build"; exit 1; }
# One target per core at a time (libFuzzer runs one process each); the verdicts come in the
# targets' order.
jobs=$(nproc)
res=$(mktemp -d)
trap 'rm -rf "$res"' EXIT
run_target() {
	local t=$1 corpus="$LCFS_ROOT/build/fuzz-corpus/$1" logf="$LCFS_ROOT/build/logs/fuzz-$1.log" runs
	mkdir -p "$corpus"
	if cargo fuzz run -s none --release --debug-assertions "$t" "$corpus" -- \
		-max_total_time="$secs" -timeout=10 -max_len=16384 -print_final_stats=1 >"$logf" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf")
		echo "ok fuzz: $t (${runs:-?} inputs in ${secs} s, no crash)" >"$res/$t"
	else
		grep -E 'panicked|SUMMARY|Test unit written' "$logf" | sed -n 1,5p >&2
		echo "not ok fuzz: $t (crash, see build/logs/fuzz-$t.log)" >"$res/$t"
	fi
}
targets=$(cargo fuzz list)
for t in $targets; do
	while [ "$(jobs -pr | wc -l)" -ge "$jobs" ]; do wait -n; done
	run_target "$t" &
done
wait
rc=0
for t in $targets; do
	if [ -f "$res/$t" ]; then cat "$res/$t"; else echo "not ok fuzz: $t (no verdict)"; fi
	grep -q '^ok ' "$res/$t" 2>/dev/null || rc=1
done
exit $rc
