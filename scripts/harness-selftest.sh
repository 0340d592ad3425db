#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Checks of the test harness's own verdicts (scripts/guest-results.awk, scripts/cargo-results.awk)
# on made-up logs: a suite that stops early, reports an unplanned or repeated test, declares no
# plan or exits non-zero, and a test binary that aborts, must each be found. Prints one
# "ok|not ok selftest: NAME" line per check (scripts/test.sh counts them).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# check NAME AWK EXPECTED: the verdict lines of AWK on standard input equal EXPECTED.
check() {
	local got
	got=$(awk -f "$here/$2" | sort)
	if [ "$got" = "$(printf '%s\n' "$3" | sed '/^$/d' | sort)" ]; then
		echo "ok selftest: $1"
	else
		echo "not ok selftest: $1"
		printf 'expected:\n%s\ngot:\n%s\n' "$3" "$got" | sed 's/^/    /' >&2
	fi
}

guest() { check "guest-results: $1" guest-results.awk "$2"; }

printf 'LCFS-PLAN: a b\nLCFS-RESULT: ok a\nLCFS-RESULT: not ok b (status 1)\nLCFS-DONE rc=0\n' |
	guest "complete suite" "ok a
fail b"
printf 'LCFS-PLAN: a b c\nLCFS-RESULT: ok a\n[   3.1] Oops\n' |
	guest "suite that stopped early" "ok a
missing b
missing c"
printf 'LCFS-PLAN: a\nLCFS-RESULT: ok a\nLCFS-RESULT: ok z\nLCFS-DONE rc=0\n' |
	guest "unplanned result" "ok a
ok z
unplanned z"
printf 'LCFS-PLAN: a\nLCFS-RESULT: ok a\nLCFS-RESULT: not ok a (status 1)\nLCFS-DONE rc=0\n' |
	guest "result reported twice" "ok a
twice a"
printf 'LCFS-RESULT: ok a\nLCFS-DONE rc=0\n' |
	guest "no plan" "ok a
unplanned a
noplan"
printf 'LCFS-PLAN: a\nLCFS-RESULT: ok a\nLCFS-DONE rc=2\n' |
	guest "non-zero exit status" "ok a
exit 2"
printf 'LCFS-PLAN: r1_w r1_c\nLCFS-RESULT: ok r1_w\nLCFS-PLAN: r1_c\nLCFS-RESULT: ok r1_c\nLCFS-DONE rc=0\n' |
	guest "plans of two boots" "ok r1_w
ok r1_c"
printf 'LCFS-PLAN: a\n    | LCFS-RESULT: ok a\nLCFS-DONE rc=0\n' |
	guest "indented output is no result" "missing a"

cargo_log() { # cargo_log ANNOUNCED REPORTED [SUMMARY]
	printf '     Running tests/x.rs (target/release/deps/x-0123abcd)\n\nrunning %s tests\n' "$1"
	for i in $(seq 1 "$2"); do echo "test t$i ... ok"; done
	[ "${3:-1}" = 0 ] || echo "test result: ok. $2 passed; 0 failed"
}
cargo_log 2 2 | check "cargo-results: complete binary" cargo-results.awk "ok x/x: t1
ok x/x: t2"
cargo_log 3 1 0 | check "cargo-results: aborted binary" cargo-results.awk "ok x/x: t1
short x/x 1 of 3 reported, no summary"
{ printf '     Running tests/x.rs (target/release/deps/x-0123abcd)\n\nrunning 2 tests\ntest t1 ... ok\ntest t2 ... FAILED\ntest result: FAILED. 1 passed; 1 failed\n'; } |
	check "cargo-results: failing test" cargo-results.awk "ok x/x: t1
fail x/x: t2"
