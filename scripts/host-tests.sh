#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The host part of `make test` (scripts/test.sh runs it in the background, beside the guest
# suites, which leave one of the two CPUs mostly idle): cargo test, clippy, rustfmt, fuzzing,
# then the install checks. Prints one "ok NAME" or "not ok NAME # DETAIL" line per check on
# stdout; progress and failure details go to stderr.
#
#   HOST_TESTS=1        cargo test, clippy, rustfmt and the install checks
#   FUZZ_SECONDS=N      fuzz each target N seconds (unset: no fuzzing)
#   MODULE_DONE=FILE    the install checks need lcfs.ko: they wait for FILE, which the caller
#                       writes ("ok" once the module is built, anything else if it failed)
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$LCFS_ROOT"

build="$LCFS_ROOT/build"
mkdir -p "$build/logs"

ok() { echo "ok $1"; }
not_ok() {
	echo "not ok $1${2:+ # $2}"
	echo "FAILED: $1${2:+ ($2)}" >&2
}
step() { # step NAME LOGFILE COMMAND...
	local name=$1 logf=$2; shift 2
	log "$name"
	if "$@" >"$logf" 2>&1; then ok "$name"; return 0; fi
	tail -30 "$logf" >&2
	not_ok "$name" "see ${logf#$LCFS_ROOT/}"
	return 1
}
# Lines "ok NAME" / "not ok NAME" of another checker, passed on (with DETAIL for failures).
pass_on() { # pass_on [DETAIL]
	local line
	while IFS= read -r line; do
		case "$line" in
		"ok "*) ok "${line#ok }" ;;
		"not ok "*) not_ok "${line#not ok }" "${1:-}" ;;
		esac
	done
}

if [ "${HOST_TESTS:-0}" = 1 ]; then
	log "host: cargo test"
	(cd userspace && cargo test --release --workspace --no-fail-fast) >"$build/logs/cargo-test.log" 2>&1
	crc=$?
	# Test names are prefixed with their crate and target ("lcfs_image/lib: tests::x"). Each test
	# binary announces "running N tests" and ends with "test result:"; one that aborts (a panic
	# outside a test, a stack overflow) stops reporting: the difference is a failure of its own.
	failed=0
	while read -r status name; do
		case "$status" in
		ok) ok "host: $name" ;;
		fail) not_ok "host: $name"; failed=1 ;;
		short) not_ok "host: ${name%% *}: every announced test reported" "${name#* }"; failed=1 ;;
		esac
	done < <(awk -f scripts/cargo-results.awk "$build/logs/cargo-test.log")
	if [ $crc != 0 ] && [ $failed = 0 ]; then
		tail -30 "$build/logs/cargo-test.log" >&2
		not_ok "host: cargo test" "cargo failed without a failing test, see build/logs/cargo-test.log"
	fi
	step "host: clippy -D warnings" "$build/logs/clippy.log" make -s clippy
	step "host: rustfmt" "$build/logs/fmt.log" make -s fmt-check
fi
if [ -n "${FUZZ_SECONDS:-}" ]; then
	log "host: fuzzing ($FUZZ_SECONDS s per target)"
	scripts/fuzz.sh "$FUZZ_SECONDS" 2>"$build/logs/fuzz.log" >"$build/logs/fuzz.out"
	pass_on <"$build/logs/fuzz.out"
	grep -q '^ok fuzz: tree' "$build/logs/fuzz.out" || grep -q '^not ok fuzz' "$build/logs/fuzz.out" ||
		not_ok "fuzz: run" "see build/logs/fuzz.log"
fi
# make install, uninstall and the module's install targets into scratch DESTDIRs: install-module
# and DKMS need lcfs.ko and the kernel build.
if [ "${HOST_TESTS:-0}" = 1 ]; then
	while [ ! -s "${MODULE_DONE:?}" ]; do sleep 2; done
	if [ "$(cat "$MODULE_DONE")" = ok ]; then
		log "host: make install"
		scripts/install-check.sh 2>"$build/logs/install.log" | pass_on "see build/logs/install.log"
	else
		not_ok "host: make install" "lcfs.ko did not build"
	fi
fi
