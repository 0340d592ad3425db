# Helpers for guest test suites (busybox sh). Each test is a function run in a subshell with
# `set -e`; its result goes to the console as "LCFS-RESULT: ok NAME (TIME)" or "LCFS-RESULT: not ok
# NAME (status N, TIME)", which the host collects. Output of a failing test is shown indented.
#
# Before its first test, every boot of a suite declares the tests it will report with `plan`
# ("LCFS-PLAN: NAME..."; `run_tests` does it for a fixed list). The host fails a suite whose plan
# is missing, a planned test without a result, a result that was not planned or came twice, and a
# non-zero exit status of the suite script (scripts/guest-results.awk): a suite that stops early
# cannot pass. Test names are single words.

plan() {
	echo "LCFS-PLAN: $*"
}

# run_tests NAME...: declares the tests and runs each, NAME by the function t_NAME.
run_tests() {
	plan "$@"
	for _t in "$@"; do run_test "$_t" "t_$_t"; done
}

run_test() {
	_name=$1
	shift
	_t0=$(cut -d' ' -f1 /proc/uptime)
	# Not inside `if`: errexit is ignored in condition context, even in a subshell.
	( set -e; "$@" ) >/tmp/test.out 2>&1
	_rc=$?
	# The test's time, for the test budget (Documentation/build.md); readers take the name only.
	_took=$(awk -v t0="$_t0" '{ printf "%.1f s", $1 - t0 }' /proc/uptime)
	if [ $_rc = 0 ]; then
		echo "LCFS-RESULT: ok $_name ($_took)"
	else
		echo "LCFS-RESULT: not ok $_name (status $_rc, $_took)"
		sed 's/^/    | /' /tmp/test.out
	fi
	# The status stays in _rc; returning it would make a suite's last failing test its exit
	# status, which the host reads as the script itself failing.
}

fail() {
	echo "FAIL: $*"
	exit 1
}

assert_eq() {
	[ "$1" = "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
}

# expect_mount_error DEV ERRNO_TEXT LOG_TEXT: the mount must fail with that error message and
# add exactly one kernel log line containing LOG_TEXT.
expect_mount_error() {
	_before=$(dmesg | grep -c "lcfs: [a-z]*[0-9]*: ")
	if mount -t lcfs "$1" /mnt 2>/tmp/mount.err; then
		umount /mnt
		fail "mount of $1 succeeded"
	fi
	cat /tmp/mount.err
	grep -q "$2" /tmp/mount.err || fail "expected '$2' from mount"
	_after=$(dmesg | grep -c "lcfs: [a-z]*[0-9]*: ")
	assert_eq "$((_after - _before))" 1 "new lcfs kernel log lines"
	dmesg | grep "lcfs: [a-z]*[0-9]*: " | tail -1
	dmesg | grep "lcfs: [a-z]*[0-9]*: " | tail -1 | grep -q "$3" || fail "kernel log lacks '$3'"
}

# poke FILE OFFSET OCTAL_BYTE: overwrite one byte in place.
poke() {
	printf "\\$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
