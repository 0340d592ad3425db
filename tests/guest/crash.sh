# lcfs-needs: crash-kill
# lcfs-needs: guest-tools
# lcfs-timeout: 600
# Crash recovery, in two boots per round on one scratch disk (scripts/vm-crash.sh drives them):
#
# Boot 1 (lcfs_phase=1): mkfs, mount, then a workload in /mnt/default: files written and fsynced
# (dd conv=fsync; after fsync returned the guest prints "LCFS-FSYNCED NAME SKIP COUNT LEN MD5"),
# files written without fsync ("LCFS-WROTE ..." printed before the write), unsynced appends to
# fsynced files, renames and unlinks of unsynced files (each printed before it starts). After a
# first batch it prints LCFS-CRASH-NOW and keeps going; the host kills QEMU (SIGKILL) a few
# seconds later, mid-workload.
#
# Boot 1 also fills a layer "big" with 3000 files, removes it just before LCFS-CRASH-NOW
# ("LCFS-REMOVED big" once the call returned; its space is reclaimed in the background while
# the workload goes on), and snapshots the workload's layer every 50 files
# ("LCFS-SNAPSHOT NAME" once the call returned), so kills land during reclaim and snapshots.
# In round 1 the filesystem is frozen right after the removal ("LCFS-RECLAIM-CUT N": N queue
# entries left), so that kill lands with the reclaim cut for certain, and boot 2 must resume it.
#
# Boot 2 (lcfs_phase=2, with boot 1's LCFS- lines in /tests/crash.manifest): fsck.lcfs -n must
# find the filesystem clean; every fsynced file must be there with its checksum (its first LEN
# bytes if unsynced appends followed); every unsynced file may be absent, or no longer than
# written, each byte either what was written or zero (data not yet on disk); every file reads
# without error; a removed layer is gone and its reclaim finishes after the mount, every
# snapshot taken is there; the filesystem takes new writes; after the unmount fsck is still
# clean.
#
# Meanwhile other layers are busy (fsx, metadata churn, snapshots, clones and removals, sync and
# drop_caches: see start_background_load), so the kill also lands in their changes, and boot 2
# checks that their jobs all ran without an error before it.
#
# File contents are slices of /bin/busybox (the same in both boots): SKIP and COUNT 4 KiB
# blocks from it, cut to LEN bytes.
. /tests/lib.sh

DEV=/dev/vda
M=/mnt/default
SRC=/bin/busybox
phase=0 round=0
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	lcfs_phase=*) phase=${arg#lcfs_phase=} ;;
	lcfs_round=*) round=${arg#lcfs_round=} ;;
	esac
done
SRC_BLOCKS=$(($(stat -c %s $SRC) / 4096))

gen() { # gen SKIP COUNT LEN: the contents of a file
	dd if=$SRC bs=4096 skip="$1" count="$2" 2>/dev/null | head -c "$3"
}

# The recipe of file number I (a different one per round): skip, count and length.
recipe() {
	_k=$(($1 * 7919 + round * 104729))
	_c=$((1 + _k % 48))
	echo "$((_k % (SRC_BLOCKS - 64))) $_c $((_c * 4096 - (_k / 48) % 4000))"
}

write_fsynced() { # write_fsynced NAME I
	set -- "$1" $(recipe "$2")
	gen "$2" "$3" "$4" | dd of="$M/$1" bs=65536 conv=fsync 2>/dev/null
	echo "LCFS-FSYNCED $1 $2 $3 $4 $(gen "$2" "$3" "$4" | md5sum | cut -d' ' -f1)" >&3
}

write_unsynced() { # write_unsynced NAME I
	set -- "$1" $(recipe "$2")
	echo "LCFS-WROTE $1 $2 $3 $4" >&3
	gen "$2" "$3" "$4" | dd of="$M/$1" bs=65536 2>/dev/null
}

append_unsynced() { # append_unsynced NAME I
	set -- "$1" $(recipe "$2")
	echo "LCFS-APPEND $1 $2 $3 $4" >&3
	gen "$2" "$3" "$4" >>"$M/$1"
}

# The records above go to fd 3, the console, also from inside a test (whose output is kept apart).
exec 3>&1

# Boot 2's checks, each a test named round<N>_<check>.
CHECKS="fsck_clean_after_crash mount_after_crash fsynced_files_intact unsynced_files_sane
	everything_readable layers_after_crash other_layers_after_crash writable_after_recovery
	umount_fsck_clean"

# Other layers busy when the kill comes, as on a host of many containers: fsx in two layers,
# metadata churn in a third, a fourth snapshotted, cloned, written and removed in a loop, and a
# sync and drop_caches loop. Each job says it started ("LCFS-BG-START NAME"); one that fails
# before the kill says so ("LCFS-BG-FAIL NAME"), which boot 2 reports.
bg_job() { # bg_job NAME COMMAND...: runs COMMAND in the background
	_n=$1
	shift
	(
		echo "LCFS-BG-START $_n" >&3
		"$@" >/tmp/bg-$_n.out 2>&1 || {
			echo "LCFS-BG-FAIL $_n" >&3
			tail -5 /tmp/bg-$_n.out >&3
		}
	) &
}
bg_meta() {
	mkdir /mnt/meta/a /mnt/meta/b
	i=0
	while :; do
		echo "$i" >/mnt/meta/a/f$((i % 97)) || return 1
		mv -f /mnt/meta/a/f$((i % 97)) /mnt/meta/b/g$((i % 89)) || return 1
		ln -s "t$i" /mnt/meta/a/l$i && rm /mnt/meta/a/l$i || return 1
		mkdir /mnt/meta/a/d$i && rmdir /mnt/meta/a/d$i || return 1
		[ $((i % 5)) != 0 ] || rm -f /mnt/meta/b/g$((i % 89)) || return 1
		i=$((i + 1))
	done
}
bg_layers() {
	i=0
	while :; do
		lcfs layer snapshot meta ms$i -m /mnt || return 1
		lcfs layer clone ms$i mc$i -m /mnt || return 1
		echo "$i" >/mnt/mc$i/new || return 1
		lcfs layer remove mc$i -m /mnt || return 1
		lcfs layer remove ms$i -m /mnt || return 1
		i=$((i + 1))
	done
}
bg_caches() {
	while :; do
		sync
		echo 3 >/proc/sys/vm/drop_caches
		sleep 1
	done
}
# The layers are made before the removal (and round 1's freeze), the jobs started right before
# LCFS-CRASH-NOW: in round 1 they wait on the frozen filesystem when the kill comes.
make_background_layers() {
	for l in fx1 fx2 meta; do lcfs layer create $l -m /mnt; done
}
start_background_load() {
	mkdir -p /tmp/fx1 /tmp/fx2
	bg_job fx1 fsx -N 100000000 -S $((round * 2 + 1)) -P /tmp/fx1 /mnt/fx1/f
	bg_job fx2 fsx -N 100000000 -S $((round * 2 + 2)) -P /tmp/fx2 /mnt/fx2/f
	bg_job meta bg_meta
	bg_job layers bg_layers
	bg_job caches bg_caches
}

# The first batch, before the host is told to kill: six fsynced and six unsynced files.
t_workload_started() {
	mkfs.lcfs -q $DEV
	mount -t lcfs $DEV /mnt
	i=0
	while [ $i -lt 12 ]; do
		if [ $((i % 2)) = 0 ]; then write_fsynced "s$i" $i; else write_unsynced "u$i" $i; fi
		i=$((i + 1))
	done
	assert_eq "$(ls $M | wc -l)" 12 "files of the first batch"
	lcfs layer create big -m /mnt
	mkdir /mnt/big/d
	line=$(head -c 300 /dev/zero | tr '\0' x)
	i=0
	while [ $i -lt 3000 ]; do echo "$i$line" >/mnt/big/d/f$i; i=$((i + 1)); done
	# And many empty ones, made by few processes: a tree whose reclaim takes many chunks.
	(cd /mnt/big/d && seq 1 12000 | sed 's/^/e/' | xargs touch)
	sync
}

phase1() {
	echo "LCFS-INFO: crash round $round, boot 1: workload"
	# Boot 1 declares the whole round: the checks of boot 2 too.
	plan "round${round}_workload_started" $(for c in $CHECKS; do echo "round${round}_$c"; done)
	# Without a first batch there is nothing to crash: no LCFS-CRASH-NOW, which the host reports.
	run_test "round${round}_workload_started" t_workload_started
	[ "$_rc" = 0 ] || return 1
	make_background_layers
	# The kill comes during the reclaim this starts, or after it.
	lcfs layer remove big -m /mnt && echo "LCFS-REMOVED big"
	if [ "$round" = 1 ]; then
		# Round 1 stops the reclaim where it is, for certain: the freeze commits the chunks done
		# so far and pauses the rest, and the kill comes while the filesystem is frozen (the
		# workload below waits on its first write).
		fsfreeze --freeze /mnt
		echo "LCFS-RECLAIM-CUT $(lcfs df /mnt --json | awk '/"reclaim_queued"/ { print $2 + 0 }')"
	fi
	start_background_load
	echo "LCFS-CRASH-NOW"
	# Until the host kills the guest: fsynced and unsynced files, appends, renames, unlinks.
	i=100
	while [ $i -lt 3000 ]; do
		if [ $((i % 50)) = 0 ]; then
			lcfs layer snapshot default "snap$i" -m /mnt && echo "LCFS-SNAPSHOT snap$i"
		fi
		if [ $((i % 2)) = 0 ]; then write_fsynced "s$i" $i; else write_unsynced "u$i" $i; fi
		# Appends to the fsynced files of the first batch: their fsynced part must survive.
		[ $((i % 3)) != 0 ] || append_unsynced "s$((i / 3 % 6 * 2))" $((i + 5000))
		if [ $((i % 4)) = 1 ] && [ -e "$M/u$((i - 2))" ]; then
			echo "LCFS-RENAME u$((i - 2)) r$((i - 2))"
			mv "$M/u$((i - 2))" "$M/r$((i - 2))"
		fi
		if [ $((i % 4)) = 3 ] && [ -e "$M/u$((i - 2))" ]; then
			echo "LCFS-DELETE u$((i - 2))"
			rm "$M/u$((i - 2))"
		fi
		i=$((i + 1))
	done
	echo "LCFS-INFO: workload finished before the kill"
	sleep 100000
}

# check_partial FILE SKIP COUNT LEN: FILE is no longer than LEN, and each byte is what was
# written or zero.
check_partial() {
	gen "$2" "$3" "$4" >/tmp/exp
	assert_eq "$(stat -c %s /tmp/exp)" "$4" "expected data of $1"
	size=$(stat -c %s "$1")
	[ "$size" -le "$4" ] || fail "$1: size $size, only $4 bytes written"
	cmp -s "$1" /tmp/exp && return 0
	# cmp -l: offset, byte of FILE, byte expected (octal); past the end of FILE it stops.
	cmp -l "$1" /tmp/exp 2>/dev/null | awk '$2 != 0 { print "byte " $1 ": " $2 " instead of " $3 " or 0"; bad = 1; exit }
		END { exit bad }' || fail "$1: data that was never written"
	return 1
}

t_fsck_clean_after_crash() {
	fsck.lcfs -n -v $DEV
}

t_mount_after_crash() {
	mount -t lcfs $DEV /mnt
	dmesg | grep 'lcfs' | tail -5
	ls -la $M | head -40
}

t_fsynced_files_intact() {
	n=0
	# The last record of each name wins; appends after the fsync only lengthen the file.
	awk '$1 == "LCFS-FSYNCED" { f[$2] = $3 " " $4 " " $5 " " $6; a[$2] = 0 }
		$1 == "LCFS-APPEND" && ($2 in f) { a[$2] += $5 }
		END { for (k in f) print k, f[k], a[k] }' /tests/crash.manifest >/tmp/fsynced
	while read -r name skip count len md5 appended; do
		[ -f "$M/$name" ] || fail "fsynced file $name is missing"
		size=$(stat -c %s "$M/$name")
		[ "$size" -ge "$len" ] && [ "$size" -le $((len + appended)) ] ||
			fail "$name: size $size, fsynced $len (+ $appended appended)"
		got=$(head -c "$len" "$M/$name" | md5sum | cut -d' ' -f1)
		[ "$got" = "$md5" ] || fail "$name: checksum $got, fsynced $md5"
		n=$((n + 1))
	done </tmp/fsynced
	echo "LCFS-INFO: round $round: $n fsynced files intact" >/dev/console
	# At least the six of the first batch.
	[ $n -ge 6 ] || fail "only $n fsynced files recorded"
}

t_unsynced_files_sane() {
	complete=0 partial=0 absent=0
	# An unsynced file may be under its name, its new name if a rename started, or gone.
	awk '$1 == "LCFS-WROTE" { r[$2] = $3 " " $4 " " $5 }
		$1 == "LCFS-RENAME" && ($2 in r) { r[$3] = r[$2] }
		END { for (k in r) print k, r[k] }' /tests/crash.manifest >/tmp/unsynced
	while read -r name skip count len; do
		if [ ! -e "$M/$name" ]; then absent=$((absent + 1)); continue; fi
		if check_partial "$M/$name" "$skip" "$count" "$len"; then
			complete=$((complete + 1))
		else
			partial=$((partial + 1))
		fi
	done </tmp/unsynced
	echo "LCFS-INFO: round $round: unsynced names: $complete complete, $partial partial or zero-filled, $absent absent" >/dev/console
}

t_everything_readable() {
	ls -la $M >/dev/null
	for f in $M/*; do
		cat "$f" >/dev/null || fail "cannot read $f"
	done
	echo "LCFS-INFO: round $round: $(ls $M | wc -l) files, $(du -sk $M | cut -f1) KiB" >/dev/console
}

# A removal that returned is committed, and the reclaim it started (perhaps cut by the kill)
# resumes at mount and ends; every snapshot whose call returned is a frozen layer.
t_layers_after_crash() {
	lcfs layer list -m /mnt
	queued=$(lcfs df /mnt --json | awk '/"reclaim_queued"/ { print $2 + 0 }')
	echo "LCFS-INFO: round $round: $queued reclaim queue entries at mount" >/dev/console
	if grep -q '^LCFS-REMOVED big' /tests/crash.manifest; then
		[ ! -e /mnt/big ] || fail "removed layer big is back"
	fi
	cut=$(awk '$1 == "LCFS-RECLAIM-CUT" { print $2 }' /tests/crash.manifest)
	if [ -n "$cut" ]; then
		[ "$cut" -gt 0 ] || fail "the reclaim had finished before the freeze: nothing was cut"
		dmesg | grep -q 'resuming the reclaim of removed layers' ||
			fail "the mount did not resume the reclaim cut with $cut queue entries"
	fi
	waited=0
	while [ "$(lcfs df /mnt --json | awk '/"reclaim_queued"/ { print $2 + 0 }')" != 0 ]; do
		[ $waited -lt 600 ] || fail "reclaim did not finish in 60 s after the mount"
		sleep 0.1
		waited=$((waited + 1))
	done
	for s in $(awk '$1 == "LCFS-SNAPSHOT" { print $2 }' /tests/crash.manifest); do
		assert_eq "$(lcfs layer show "$s" -m /mnt | awk '$1 == "state" { print $2 }')" ro "state of snapshot $s"
	done
}

# The other layers' jobs all started and none failed before the kill; their layers (fsx's files
# were never fsynced) read without error.
t_other_layers_after_crash() {
	assert_eq "$(grep -c '^LCFS-BG-START' /tests/crash.manifest)" 5 "background jobs started"
	! grep '^LCFS-BG-FAIL' /tests/crash.manifest || fail "a background job failed before the kill"
	for l in fx1 fx2 meta; do
		[ -d /mnt/$l ] || fail "layer $l is missing"
		for f in $(find /mnt/$l -type f); do
			cat "$f" >/dev/null || fail "cannot read $f"
		done
	done
	echo "LCFS-INFO: round $round: $(lcfs layer list -m /mnt | wc -l) layer lines after the crash" >/dev/console
}

t_writable_after_recovery() {
	gen 10 20 81920 >$M/after
	sync
	echo 3 >/proc/sys/vm/drop_caches
	gen 10 20 81920 | cmp - $M/after
	rm $M/after
	mkdir $M/d
	rmdir $M/d
}

t_umount_fsck_clean() {
	umount /mnt
	fsck.lcfs -n $DEV
}

case "$phase" in
1) phase1 ;;
2)
	echo "LCFS-INFO: crash round $round, boot 2: $(grep -c '^LCFS-FSYNCED' /tests/crash.manifest) fsynced, $(grep -c '^LCFS-WROTE' /tests/crash.manifest) unsynced records"
	plan $(for c in $CHECKS; do echo "round${round}_$c"; done)
	for c in $CHECKS; do run_test "round${round}_$c" "t_$c"; done
	;;
*)
	plan crash_suite_phase
	echo "LCFS-RESULT: not ok crash_suite_phase (run it through scripts/vm.sh: no lcfs_phase=)"
	;;
esac
