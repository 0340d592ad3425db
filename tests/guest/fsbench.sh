# lcfs-needs: debian-rootfs
# lcfs-timeout: 5400
# Filesystem benchmark (not a test): fio sequential and random read and write, and a metadata
# workload (create, stat, unlink FILES files), on ext4 and on lcfs on the same virtual disk in the
# same guest run. Prints "BENCH fs=... test=... value=... unit=..." lines for
# scripts/fsbench.sh, which turns them into ratios. Buffered I/O (ext4 and lcfs alike), caches
# dropped before every read test.
. /tests/lib.sh

DEV=/dev/vda
FILES=${FILES:-100000}
SIZE=${SIZE:-256m}
RUNTIME=${RUNTIME:-20}

fio() { chroot /debian fio "$@"; }
# Centiseconds since boot, from the kernel (no fork, no clock setting needed).
cs() {
	read -r _up _ </proc/uptime
	echo "${_up%.*}${_up#*.}"
}
# FILES per second between two cs() readings.
rate() { echo $((FILES * 100 / ($2 - $1 > 0 ? $2 - $1 : 1))); }
# A result line for scripts/fsbench.sh: on the console (test output is shown only on failure).
bench() { echo "BENCH $*" | tee /dev/console; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# fio's bandwidth (KiB/s) or IOPS of its only job, from the terse output.
fio_run() {
	name=$1 dir=$2
	shift 2
	fio --name="$name" --directory="$dir" --ioengine=psync --direct=0 --minimal "$@" >/tmp/fio.out
	cat /tmp/fio.out >&2
}

bench_fs() {
	fs=$1 dir=$2
	# fio must see the filesystem under test, not the Debian root's own directory.
	[ "$(chroot /debian stat -c '%d %i' "$dir")" = "$(stat -c '%d %i' "$dir")" ] ||
		fail "$dir in the chroot is not the $fs filesystem"
	fio_run seqwrite "$dir" --rw=write --bs=1M --size=$SIZE --end_fsync=1
	bench "fs=$fs test=seq-write value=$(cut -d';' -f48 /tmp/fio.out) unit=KiB/s"
	drop_caches
	fio_run seqread "$dir" --rw=read --bs=1M --size=$SIZE --filename=seqwrite.0.0
	bench "fs=$fs test=seq-read value=$(cut -d';' -f7 /tmp/fio.out) unit=KiB/s"
	fio_run randwrite "$dir" --rw=randwrite --bs=4k --size=64m --time_based --runtime=$RUNTIME --end_fsync=1
	bench "fs=$fs test=rand-write value=$(cut -d';' -f49 /tmp/fio.out) unit=IOPS"
	drop_caches
	fio_run randread "$dir" --rw=randread --bs=4k --size=64m --time_based --runtime=$RUNTIME --filename=randwrite.0.0
	bench "fs=$fs test=rand-read value=$(cut -d';' -f8 /tmp/fio.out) unit=IOPS"
	rm -f "$dir"/*.0.0
	mkdir "$dir/meta"
	t0=$(cs)
	i=0
	while [ $i -lt "$FILES" ]; do : >"$dir/meta/f$i"; i=$((i + 1)); done
	t1=$(cs)
	find "$dir/meta" -type f -exec stat -c %i {} + >/dev/null
	t2=$(cs)
	rm -rf "$dir/meta"
	sync
	t3=$(cs)
	bench "fs=$fs test=create value=$(rate $t0 $t1) unit=files/s"
	bench "fs=$fs test=stat value=$(rate $t1 $t2) unit=files/s"
	bench "fs=$fs test=unlink value=$(rate $t2 $t3) unit=files/s"
}

t_ext4() {
	chroot /debian mkfs.ext4 -q -F "$DEV"
	mount -t ext4 "$DEV" /mnt
	# fio runs in the Debian chroot: the same path there.
	mount --bind /mnt /debian/mnt
	bench_fs ext4 /mnt
	umount /debian/mnt
	umount /mnt
}

t_lcfs() {
	mkfs.lcfs -f -q "$DEV"
	mount -t lcfs "$DEV" /mnt
	mount --bind /mnt /debian/mnt
	bench_fs lcfs /mnt/default
	umount /debian/mnt
	umount /mnt
	fsck.lcfs -n "$DEV"
}

run_test ext4 t_ext4
run_test lcfs t_lcfs
