# lcfs-needs: debian-rootfs
# lcfs-timeout: 7200
# Filesystem benchmark (not a test): fio sequential and random read and write, a metadata
# workload (create, stat, unlink FILES files) and small appends (APPENDS 4-byte writes), on ext4 and on lcfs on the same virtual disk in the
# same guest run. Prints "BENCH round=... fs=... test=... value=... unit=..." lines for
# scripts/fsbench.sh, which turns them into ratios. Buffered I/O (ext4 and lcfs alike), caches
# dropped before every read test.
#
# TCG's speed drifts during a run by more than the differences measured here, so the two
# filesystems never run minutes apart: each group of tests (sequential, random, metadata) runs on
# a freshly made ext4 and then on a freshly made lcfs (or the other way round: the order
# alternates, so that a steady drift favours neither), and this repeats ROUNDS times. The host
# script compares each pair and reports the median.
. /tests/lib.sh

DEV=/dev/vda
FILES=${FILES:-100000}
SIZE=${SIZE:-256m}
RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
APPENDS=${APPENDS:-1000000}
# GROUPS: the groups to run, comma-separated (the kernel command line carries no spaces).
GROUPS=${GROUPS:-seq,rand,meta,append}

fio() { chroot /debian fio "$@"; }
# Centiseconds since boot, from the kernel (no fork, no clock setting needed).
cs() {
	read -r _up _ </proc/uptime
	echo "${_up%.*}${_up#*.}"
}
# FILES per second between two cs() readings.
rate() { echo $((FILES * 100 / ($2 - $1 > 0 ? $2 - $1 : 1))); }
# A result line for scripts/fsbench.sh: on the console (test output is shown only on failure).
bench() { echo "BENCH round=$round fs=$fs $*" | tee /dev/console; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# fio's bandwidth (KiB/s) or IOPS of its only job, from the terse output.
fio_run() {
	name=$1
	shift
	fio --name="$name" --directory="$dir" --ioengine=psync --direct=0 --minimal "$@" >/tmp/fio.out
	cat /tmp/fio.out >&2
}

group_seq() {
	fio_run seqwrite --rw=write --bs=1M --size=$SIZE --end_fsync=1
	bench "test=seq-write value=$(cut -d';' -f48 /tmp/fio.out) unit=KiB/s"
	drop_caches
	fio_run seqread --rw=read --bs=1M --size=$SIZE --filename=seqwrite.0.0
	bench "test=seq-read value=$(cut -d';' -f7 /tmp/fio.out) unit=KiB/s"
}

group_rand() {
	fio_run randwrite --rw=randwrite --bs=4k --size=64m --time_based --runtime=$RUNTIME --end_fsync=1
	bench "test=rand-write value=$(cut -d';' -f49 /tmp/fio.out) unit=IOPS"
	drop_caches
	fio_run randread --rw=randread --bs=4k --size=64m --time_based --runtime=$RUNTIME --filename=randwrite.0.0
	bench "test=rand-read value=$(cut -d';' -f8 /tmp/fio.out) unit=IOPS"
}

group_meta() {
	mkdir "$dir/meta"
	sync
	t0=$(cs)
	i=0
	while [ $i -lt "$FILES" ]; do : >"$dir/meta/f$i"; i=$((i + 1)); done
	t1=$(cs)
	find "$dir/meta" -type f -exec stat -c %i {} + >/dev/null
	t2=$(cs)
	rm -rf "$dir/meta"
	sync
	t3=$(cs)
	bench "test=create value=$(rate $t0 $t1) unit=files/s"
	bench "test=stat value=$(rate $t1 $t2) unit=files/s"
	bench "test=unlink value=$(rate $t2 $t3) unit=files/s"
}

# Small appends: APPENDS 4-byte O_APPEND writes to one file (a logging pattern: each grows the
# file), then as many 4-byte overwrites of it, then an fsync.
group_append() {
	t0=$(cs)
	chroot /debian dd if=/dev/zero of="$dir/log" bs=4 count="$APPENDS" oflag=append conv=notrunc status=none
	t1=$(cs)
	chroot /debian dd if=/dev/zero of="$dir/log" bs=4 count="$APPENDS" conv=notrunc,fsync status=none
	t2=$(cs)
	bench "test=append value=$((APPENDS * 100 / (t1 - t0 > 0 ? t1 - t0 : 1))) unit=writes/s"
	bench "test=overwrite value=$((APPENDS * 100 / (t2 - t1 > 0 ? t2 - t1 : 1))) unit=writes/s"
}

# run_group GROUP FS: a fresh filesystem, the group's tests, then unmount (and fsck for lcfs).
run_group() {
	fs=$2
	case $fs in
	ext4)
		# Inode tables and journal initialised now, not by a kernel thread during the tests.
		chroot /debian mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$DEV"
		mount -t ext4 "$DEV" /mnt
		dir=/mnt
		;;
	lcfs)
		mkfs.lcfs -f -q "$DEV"
		mount -t lcfs "$DEV" /mnt
		dir=/mnt/default
		;;
	esac
	# fio runs in the Debian chroot: the same path there, and it must be the filesystem under
	# test, not the Debian root's own directory.
	mount --bind /mnt /debian/mnt
	[ "$(chroot /debian stat -c '%d %i' "$dir")" = "$(stat -c '%d %i' "$dir")" ] ||
		fail "$dir in the chroot is not the $fs filesystem"
	"group_$1"
	umount /debian/mnt
	umount /mnt
	if [ "$fs" = lcfs ]; then fsck.lcfs -n "$DEV"; fi
}

# Every group on both filesystems, ROUNDS times; the first filesystem alternates from one pair
# to the next.
t_bench() {
	flip=0
	round=1
	while [ $round -le "$ROUNDS" ]; do
		for g in $(echo "$GROUPS" | tr , " "); do
			if [ $flip = 0 ]; then first=ext4 second=lcfs; else first=lcfs second=ext4; fi
			flip=$((1 - flip))
			run_group $g $first
			run_group $g $second
		done
		round=$((round + 1))
	done
}

echo "LCFS-INFO: $ROUNDS rounds"
run_tests bench
