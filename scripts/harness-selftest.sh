#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Checks of the test harness's own verdicts (scripts/guest-results.awk, scripts/cargo-results.awk,
# tests/guest/gotest-results.sh) on made-up logs: a suite that stops early, reports an unplanned or repeated test, declares no
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

printf 'LCFS-PLAN: a b\nLCFS-RESULT: ok a (0.4 s)\nLCFS-RESULT: not ok b (status 1, 2.0 s)\nLCFS-DONE rc=0\n' |
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

# gotest NAME EXPECTED: what tests/guest/gotest-results.sh reports (from its plan on) for the Go
# -test.v output that the script on standard input prints.
gotest() {
	local got
	cat >"$tmp/go.sh"
	got=$(sh "$here/../tests/guest/gotest-results.sh" -k "$tmp/skips" -o "$tmp/go.out" p sh "$tmp/go.sh" |
		sed -n '/^LCFS-PLAN:/,$p')
	if [ "$got" = "$2" ]; then
		echo "ok selftest: gotest-results: $1"
	else
		echo "not ok selftest: gotest-results: $1"
		printf 'expected:\n%s\ngot:\n%s\n' "$2" "$got" | sed 's/^/    /' >&2
	fi
}
echo "p/t/Listed a reason" >"$tmp/skips"
# A failure shows its own last lines, not those of the case that ran beside it.
gotest "failure with its own lines" "LCFS-PLAN: p/t/A p/t/B p/finished
LCFS-RESULT: not ok p/t/A
    |     a.go:1: first
    |     a.go:2: second
    |     a.go:3: mismatch
LCFS-RESULT: ok p/t/B
LCFS-RESULT: not ok p/finished (exit status 1, 3 verdicts)" <<'EOF'
echo '=== RUN   TestT'; echo '=== RUN   TestT/A'; echo '=== RUN   TestT/B'
echo '=== CONT  TestT/A'; echo '    a.go:1: first'; echo '=== CONT  TestT/B'; echo '    b.go:1: b says'
echo '=== CONT  TestT/A'; echo '    a.go:2: second'; echo '    a.go:3: mismatch'
echo '--- FAIL: TestT (1.00s)'; echo '    --- FAIL: TestT/A (0.50s)'; echo '    --- PASS: TestT/B (0.50s)'
exit 1
EOF
# A listed skip is left out; any other skip, and a started case without a verdict, is a failure;
# a binary that gives no verdict at all has not finished, whatever its status.
gotest "skips and missing verdicts" "LCFS-PLAN: p/t/Other p/t/Cut p/finished
LCFS-SKIPPED: p/t/Listed (a reason)
LCFS-RESULT: not ok p/t/Other (skipped, not listed as an allowed skip)
LCFS-RESULT: not ok p/t/Cut (started, no verdict)
LCFS-RESULT: ok p/finished" <<'EOF'
echo '=== RUN   TestT'; echo '=== RUN   TestT/Listed'; echo '=== RUN   TestT/Other'; echo '=== RUN   TestT/Cut'
echo '    --- SKIP: TestT/Listed (0.00s)'; echo '    --- SKIP: TestT/Other (0.00s)'
exit 0
EOF
gotest "no verdicts" "LCFS-PLAN: p/finished
LCFS-RESULT: not ok p/finished (exit status 0, 0 verdicts)" <<'EOF'
echo 'testing: warning: no tests to run'
exit 0
EOF
