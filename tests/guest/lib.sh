# Helpers for guest test suites (busybox sh). Each test is a function run in a subshell with
# `set -e`; its result goes to the console as "LCFS-RESULT: ok NAME" or "LCFS-RESULT: not ok NAME",
# which the host collects. Output of a failing test is shown indented.

run_test() {
	_name=$1
	shift
	# Not inside `if`: errexit is ignored in condition context, even in a subshell.
	( set -e; "$@" ) >/tmp/test.out 2>&1
	_rc=$?
	if [ $_rc = 0 ]; then
		echo "LCFS-RESULT: ok $_name"
	else
		echo "LCFS-RESULT: not ok $_name (status $_rc)"
		sed 's/^/    | /' /tmp/test.out
	fi
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
