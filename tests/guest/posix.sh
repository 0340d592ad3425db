# lcfs-needs: debian-rootfs
# lcfs-needs: guest-tools
# lcfs-timeout: 3600
# POSIX conformance (pjdfstest) and data integrity (fsx with mmap; lcfs-fsx with direct I/O
# mixed with buffered and mapped I/O, copy_file_range between two files) on one filesystem, lcfs
# by default; ext4 and tmpfs give the reference. Settings (scripts/vm.sh --env NAME=VALUE):
#   FS=lcfs|ext4|tmpfs        filesystem under test, made on the scratch disk /dev/vda
#   POSIX_PARTS=pjdfstest,fsx,dio parts to run (dio: lcfs-fsx, FSX_OPS operations per seed)
#   PJD_FEATURES=...          pjdfstest opt-in features (comma-separated; pjdfstest -l lists them)
#   PJD_TESTS=...             only the pjdfstest tests whose names contain one of these (comma-separated)
#   FSX_OPS=100000            operations per fsx run
#   FSX_SEEDS=1,2,3           one fsx run per seed, each on its own file
#   FSX_PARALLEL=0|1          1: the seeds' runs at the same time (one per vCPU)
#   FSX_CONFIG=/tests/fsx.toml  fsx configuration (operation mix, file size); "none": fsx defaults
# pjdfstest failures are compared with tests/guest/pjdfstest.exceptions. Measured counts and times
# are printed as "LCFS-INFO:" lines.
. /tests/lib.sh

FS=${FS:-lcfs}
POSIX_PARTS=${POSIX_PARTS:-pjdfstest,fsx,dio}
PJD_FEATURES=${PJD_FEATURES:-posix_fallocate,rename_ctime,utime_now,utimensat}
PJD_TESTS=${PJD_TESTS:-}
FSX_OPS=${FSX_OPS:-100000}
FSX_SEEDS=${FSX_SEEDS:-1,2,3}
FSX_PARALLEL=${FSX_PARALLEL:-0}
FSX_CONFIG=${FSX_CONFIG:-/tests/fsx.toml}
DEV=/dev/vda
MNT=/mnt
EXCEPTIONS=/tests/pjdfstest.exceptions
# Where the tests work: lcfs shows its layers under the mount root; the tests run in a clone of
# the first layer, frozen, as container layers are.
WORK=$MNT
[ "$FS" != lcfs ] || WORK=$MNT/work

info() { echo "LCFS-INFO: $*"; }
part() { case ",$POSIX_PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
mounted() { grep -q "^[^ ]* $MNT $FS " /proc/mounts || fail "$FS is not mounted on $MNT"; }

info "posix suite: FS=$FS POSIX_PARTS=$POSIX_PARTS FSX_OPS=$FSX_OPS FSX_SEEDS=$FSX_SEEDS FSX_PARALLEL=$FSX_PARALLEL"

do_mount() {
	case "$FS" in
	lcfs) mount -t lcfs "$DEV" "$MNT" ;;
	ext4) mount -t ext4 "$DEV" "$MNT" ;;
	tmpfs) mount -t tmpfs -o size=256m tmpfs "$MNT" ;;
	esac
}

t_mkfs_mount() {
	case "$FS" in
	lcfs) mkfs.lcfs -f -q "$DEV" ;;
	ext4) chroot /debian mkfs.ext4 -q -F "$DEV" ;;
	tmpfs) ;;
	*) fail "unknown FS=$FS (lcfs, ext4 or tmpfs)" ;;
	esac
	do_mount
	mounted
	if [ "$FS" = lcfs ]; then
		lcfs layer freeze default -m "$MNT"
		lcfs layer clone default work -m "$MNT"
	fi
	grep " $MNT " /proc/mounts
}

# --- pjdfstest -------------------------------------------------------------------------------
# pjd_run N ALLOW_REMOUNT PATTERNS...: one pjdfstest run, output in /tmp/pjd.N.out, per-test
# results in /tmp/pjd.N.status ("ok|fail|skip NAME").
pjd_run() {
	{
		echo '[features]'
		for f in $(echo "$PJD_FEATURES" | tr ',' ' '); do echo "$f = {}"; done
		echo '[settings]'
		# Longer than the timestamp granularity (jiffies at HZ=250 where timestamps are coarse).
		echo 'naptime = 0.05'
		echo "allow_remount = $2"
		echo '[dummy_auth]'
		echo 'entries = [["nobody", "nogroup"], ["tests", "tests"]]'
	} >"/tmp/pjd.$1.toml"
	_n=$1
	shift 2
	# -s: a second filesystem for the EXDEV tests (the guest's /tmp).
	NO_COLOR=1 pjdfstest -c "/tmp/pjd.$_n.toml" -p "$WORK/pjdfstest" -s /tmp/pjd-xdev "$@" >"/tmp/pjd.$_n.raw" 2>&1
	echo "exit status $?" >>"/tmp/pjd.$_n.raw"
	sed "s/$(printf '\033')\[[0-9;]*m//g" "/tmp/pjd.$_n.raw" >"/tmp/pjd.$_n.out"
	awk '$1 ~ /::/ && NF >= 2 {
		if ($NF == "ok") print "ok", $1
		else if ($NF == "FAILED") print "fail", $1
		else if ($NF == "skipped") print "skip", $1
		else if ($NF == "UNEXPECTEDLY" || $NF == "expected") print "fail", $1
	}' "/tmp/pjd.$_n.out" >"/tmp/pjd.$_n.status"
}

# Runs the suite; merged results in /tmp/pjd.out and /tmp/pjd.status, this filesystem's
# exceptions in /tmp/pjd.exc.
run_pjdfstest() {
	grep -q "^[^ ]* $MNT $FS " /proc/mounts || return 0
	mkdir -p "$WORK/pjdfstest" /tmp/pjd-xdev
	chmod 755 "$WORK/pjdfstest"
	_start=$(date +%s)
	pjd_run 1 false $(echo "$PJD_TESTS" | tr ',' ' ')
	# The erofs tests remount the filesystem read-only and back, which fails with EBUSY once an
	# earlier test has leaked a file descriptor open for writing (several do): they run on their own.
	: >/tmp/pjd.2.out
	: >/tmp/pjd.2.status
	! grep -q '^skip [^ ]*erofs' /tmp/pjd.1.status || pjd_run 2 true erofs
	echo $(( $(date +%s) - _start )) >/tmp/pjd.secs
	cat /tmp/pjd.1.out /tmp/pjd.2.out >/tmp/pjd.out
	# Results of the first run, replaced by those of the second where it ran the test.
	awk 'FILENAME == ARGV[1] { r[$2] = $1; next } { print ($2 in r) ? r[$2] : $1, $2 }' \
		/tmp/pjd.2.status /tmp/pjd.1.status >/tmp/pjd.status
	# Exceptions for this filesystem: "NAME FILESYSTEMS REASON", FILESYSTEMS comma-separated or *.
	awk -v fs="$FS" '!/^#/ && NF >= 2 {
		n = split($2, l, ","); for (i = 1; i <= n; i++) if (l[i] == fs || l[i] == "*") { print $1; break }
	}' "$EXCEPTIONS" | sort -u >/tmp/pjd.exc
	# (A line that matches no test name: grep -f with an empty file would behave differently.)
	echo '#' >>/tmp/pjd.exc
}

pjd_count() { grep -c "^$1 " /tmp/pjd.status; }

# The output block of one test (its last run): its status line and the indented lines after it.
pjd_detail() {
	awk -v name="$1" '$1 == name { on = 1; b = $0; next } on && /^[ \t]/ { b = b "\n" $0; next }
		{ on = 0 } END { if (b != "") print b }' /tmp/pjd.out
}

t_pjdfstest_no_unexpected_failures() {
	[ -s /tmp/pjd.1.raw ] || fail "pjdfstest did not run ($FS not mounted)"
	for n in 1 2; do
		[ -s /tmp/pjd.$n.raw ] || continue
		grep '^Summary: ' /tmp/pjd.$n.out || { tail -30 /tmp/pjd.$n.out; fail "pjdfstest did not finish"; }
	done
	[ "$(wc -l </tmp/pjd.status)" -gt 0 ] || fail "no test results parsed"
	unexpected=$(awk '$1 == "fail" {print $2}' /tmp/pjd.status | grep -vxF -f /tmp/pjd.exc || true)
	[ -z "$unexpected" ] || {
		for t in $unexpected; do pjd_detail "$t"; done
		fail "$(echo "$unexpected" | wc -l) unexpected failures: $(echo $unexpected)"
	}
}

t_pjdfstest_exceptions_still_fail() {
	[ -s /tmp/pjd.1.raw ] || fail "pjdfstest did not run ($FS not mounted)"
	bad=""
	for t in $(grep -v '^#' /tmp/pjd.exc); do
		st=$(awk -v n="$t" '$2 == n {print $1}' /tmp/pjd.status)
		case "$st" in
		fail) ;;
		ok) bad="$bad $t"; echo "$t passes now: remove it from pjdfstest.exceptions for $FS" ;;
		skip) echo "note: $t was skipped" ;;
		*) [ -n "$PJD_TESTS" ] || { bad="$bad $t"; echo "$t: no such pjdfstest test"; } ;;
		esac
	done
	[ -z "$bad" ] || fail "exceptions that did not fail:$bad"
}

_planned="mkfs_mount_$FS"
! part pjdfstest || _planned="$_planned pjdfstest_no_unexpected_failures pjdfstest_exceptions_still_fail"
if part fsx; then
	for seed in $(echo "$FSX_SEEDS" | tr ',' ' '); do _planned="$_planned fsx_mmap_seed_$seed"; done
fi
if part dio && [ "$FS" != tmpfs ]; then
	for seed in $(echo "$FSX_SEEDS" | tr ',' ' '); do _planned="$_planned fsx_direct_io_seed_$seed"; done
fi
if part fsx || part dio; then
	[ "$FS" = tmpfs ] || _planned="$_planned remount_keeps_data"
fi
[ "$FS" = tmpfs ] || _planned="$_planned fsck_clean"
plan $_planned

run_test "mkfs_mount_$FS" t_mkfs_mount

if part pjdfstest; then
	run_pjdfstest
	# Counts and every non-passing test, for the log (and to write the exception list).
	[ ! -s /tmp/pjd.1.raw ] || info "pjdfstest $FS: $(pjd_count ok) passed, $(pjd_count fail) failed ($(awk '$1 == "fail" {print $2}' /tmp/pjd.status | grep -cxF -f /tmp/pjd.exc) listed as exceptions), $(pjd_count skip) skipped, $(wc -l </tmp/pjd.status) total in $(cat /tmp/pjd.secs) s"
	[ ! -s /tmp/pjd.1.raw ] || awk '$1 != "ok"' /tmp/pjd.status | while read -r st name; do
		info "pjdfstest $FS $st: $name$(pjd_detail "$name" | sed -n 2p | tr -s ' \t' ' ')"
	done
	run_test pjdfstest_no_unexpected_failures t_pjdfstest_no_unexpected_failures
	run_test pjdfstest_exceptions_still_fail t_pjdfstest_exceptions_still_fail
fi

# --- fsx -------------------------------------------------------------------------------------
t_fsx() {
	mounted
	mkdir -p "/tmp/fsx_mmap-$1"
	_start=$(date +%s)
	_conf="-f $FSX_CONFIG"
	[ "$FSX_CONFIG" != none ] || _conf=""
	if ! fsx $_conf -N "$FSX_OPS" -S "$1" -P "/tmp/fsx_mmap-$1" "$WORK/fsx.$1" >"/tmp/fsx_mmap-$1/out" 2>&1; then
		tail -60 "/tmp/fsx_mmap-$1/out"
		fail "fsx seed $1 failed"
	fi
	cat "/tmp/fsx_mmap-$1/out"
	grep -q 'All operations completed A-OK' "/tmp/fsx_mmap-$1/out" || fail "fsx did not complete"
	echo "fsx $FS seed $1: $FSX_OPS operations in $(( $(date +%s) - _start )) s" >"/tmp/fsx_mmap-$1/info"
}

# lcfs-fsx: direct reads and writes (aligned as statx says, and some only to sectors) mixed with
# buffered and mapped ones, truncates, punched, zeroed and allocated ranges, fsync,
# copy_file_range and (on lcfs) FICLONERANGE within and between two files, every read checked
# against its model.
t_fsx_direct_io() {
	mounted
	_start=$(date +%s)
	_out=/tmp/fsx_direct_io-$1/out
	# lcfs shares blocks (FICLONERANGE): clones join the mix, and a refused one fails the run.
	_clone=""
	[ "$FS" != lcfs ] ||
		_clone="--ops-mix read,write,dread,dwrite,mapread,mapwrite,truncate,punch,zero,alloc,fsync,fdatasync,copy,clone,invalidate --require-clone"
	if ! lcfs-fsx -q -N "$FSX_OPS" -S "$1" --second-file $_clone "$WORK/dio.$1" >"$_out" 2>&1; then
		tail -80 "$_out"
		fail "lcfs-fsx seed $1 failed"
	fi
	cat "$_out"
	grep -q 'operations OK' "$_out" || fail "lcfs-fsx did not complete"
	echo "lcfs-fsx $FS seed $1: $FSX_OPS operations in $(( $(date +%s) - _start )) s: $(tail -n 1 "$_out")" \
		>"/tmp/fsx_direct_io-$1/info"
}

# Data written through read/write, mmap and direct I/O reaches the disk: the same bytes after a
# remount.
t_remount_keeps_data() {
	mounted
	(cd "$WORK" && for f in fsx.* dio.*; do if [ -e "$f" ]; then md5sum "$f"; fi; done) >/tmp/fsx.sums
	[ -s /tmp/fsx.sums ] || fail "no file to compare" 
	cat /tmp/fsx.sums
	umount "$MNT"
	do_mount
	(cd "$WORK" && md5sum -c /tmp/fsx.sums)
}

# run_seeds NAME FUNCTION: test NAME_seed_N runs FUNCTION N for each seed N, all at once with
# FSX_PARALLEL=1 (each on its own file, as many as vCPUs keep busy); FUNCTION leaves a line for
# the log in /tmp/NAME-N/info.
run_seeds() {
	if [ "$FSX_PARALLEL" = 1 ]; then
		for seed in $(echo "$FSX_SEEDS" | tr ',' ' '); do
			mkdir -p "/tmp/$1-$seed"
			( ( set -e; "$2" "$seed" ) >"/tmp/$1-$seed/test.out" 2>&1; echo $? >"/tmp/$1-$seed/rc" ) &
		done
		wait
		for seed in $(echo "$FSX_SEEDS" | tr ',' ' '); do
			if [ "$(cat "/tmp/$1-$seed/rc")" = 0 ]; then
				echo "LCFS-RESULT: ok $1_seed_$seed"
			else
				echo "LCFS-RESULT: not ok $1_seed_$seed (status $(cat "/tmp/$1-$seed/rc"))"
				sed 's/^/    | /' "/tmp/$1-$seed/test.out"
			fi
			[ ! -f "/tmp/$1-$seed/info" ] || info "$(cat "/tmp/$1-$seed/info") (seeds in parallel)"
		done
	else
		for seed in $(echo "$FSX_SEEDS" | tr ',' ' '); do
			mkdir -p "/tmp/$1-$seed"
			run_test "$1_seed_$seed" "$2" "$seed"
			[ ! -f "/tmp/$1-$seed/info" ] || info "$(cat "/tmp/$1-$seed/info")"
		done
	fi
}
! part fsx || run_seeds fsx_mmap t_fsx
[ "$FS" = tmpfs ] || ! part dio || run_seeds fsx_direct_io t_fsx_direct_io
if part fsx || part dio; then
	[ "$FS" = tmpfs ] || run_test remount_keeps_data t_remount_keeps_data
fi

# --- consistency -----------------------------------------------------------------------------
t_fsck_clean() {
	case "$FS" in
	lcfs) fsck.lcfs -n "$DEV" ;;
	ext4) chroot /debian e2fsck -f -n "$DEV" ;;
	esac
}

! grep -q " $MNT " /proc/mounts || umount "$MNT"
[ "$FS" = tmpfs ] || run_test fsck_clean t_fsck_clean
