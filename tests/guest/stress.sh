# lcfs-needs: debian-rootfs
# lcfs-needs: guest-tools
# Concurrency suite on the 2-vCPU guest (lockdep, KASAN and the other debug options of the test
# kernel report any locking or memory error, which fails the run): stress-ng stressors that
# create, rename, link, unlink, write and read in parallel, and shell workers that race on the
# same names in shared directories, and layers cloned, snapshotted and removed while readers
# checksum an image in other layers. The filesystem must stay consistent (fsck.lcfs) throughout.
. /tests/lib.sh

DEV=/dev/vda
M=/mnt/default

t_setup() {
	mkfs.lcfs -q "$DEV"
	mount -t lcfs -o commit=1 "$DEV" /mnt
	mount --bind /mnt /debian/mnt
	# The suite is only meaningful with real parallelism: insist on both vCPUs being online.
	n=$(grep -c ^processor /proc/cpuinfo)
	echo "online CPUs: $n"
	[ "$n" -ge 2 ]
}

t_stress_ng() {
	mkdir $M/sng
	# Its exit status says whether every stressor passed (0); the summary must say so, with a
	# metrics line for each of the ten stressors and none skipped: a stressor that did not run
	# tested nothing.
	rc=0
	chroot /debian stress-ng --temp-path /mnt/default/sng --timeout "${STRESS_SECONDS:-20}s" \
		--metrics-brief --dir 2 --rename 2 --link 2 --symlink 2 --hdd 2 --hdd-bytes 4M \
		--dentry 2 --fallocate 1 --fallocate-bytes 4M --filename 1 --mmap 1 --mmap-bytes 4M \
		--mmap-file --xattr 1 >/tmp/stress-ng.out 2>&1 || rc=$?
	cat /tmp/stress-ng.out
	assert_eq "$rc" 0 "stress-ng exit status"
	grep -q 'successful run completed' /tmp/stress-ng.out || fail "stress-ng did not report a successful run"
	for s in dir rename link symlink hdd dentry fallocate filename mmap xattr; do
		grep -E -q "metrc: \[[0-9]+\] $s +[0-9]" /tmp/stress-ng.out || fail "no metrics from the $s stressor"
	done
	! grep -E -q 'will be skipped|not implemented|(failed|skipped|untrustworthy): [1-9]' /tmp/stress-ng.out ||
		fail "stress-ng skipped or failed stressors"
	rm -rf $M/sng
}

# Four workers share two directories: each creates, writes, renames across them (over names the
# others use), links, reads back and unlinks, for a fixed number of rounds.
worker() {
	w=$1 i=0
	while [ $i -lt 60 ]; do
		n=$((i % 7))
		echo "w$w-$i" >$M/a/f$n.$w
		mv -f $M/a/f$n.$w $M/b/shared$n 2>/dev/null || true
		ln $M/b/shared$n $M/a/l$w 2>/dev/null && rm -f $M/a/l$w
		cat $M/b/shared$n >/dev/null 2>&1 || true
		mkdir $M/a/d$n 2>/dev/null && rmdir $M/a/d$n 2>/dev/null
		# Another worker may unlink the name between rm's look and its unlink.
		[ $((i % 5)) != 0 ] || rm -f $M/b/shared$n 2>/dev/null || true
		dd if=/dev/urandom of=$M/a/data$w bs=4k count=4 2>/dev/null
		i=$((i + 1))
	done
}

t_shared_directories() {
	mkdir $M/a $M/b
	pids=""
	for w in 1 2 3 4; do
		worker $w &
		pids="$pids $!"
	done
	# Each worker's status: a failed write, link or read-back stops it with a non-zero one.
	bad=0
	for p in $pids; do wait "$p" || bad=$((bad + 1)); done
	assert_eq "$bad" 0 "failed workers"
	ls -la $M/a $M/b
	rm -rf $M/a $M/b
}

# Layers change while their image is read: two readers checksum a frozen layer's file through
# two clones (the block maps of frozen layers are read without the volume lock; caches are
# dropped to keep the reads cold) and a walker lists the frozen layer's tree, while clones are
# made, written, snapshotted (frozen), walked, read and removed, and sync runs, all at once for
# STRESS_SECONDS.
stop_at() { echo $(($(date +%s) + ${STRESS_SECONDS:-20})); }
img_reader() {
	n=0
	while [ "$(date +%s)" -lt "$end" ]; do
		s=$(md5sum </mnt/$1/f | cut -d' ' -f1)
		[ "$s" = "$want" ] || { echo "reader in $1: checksum $s, expected $want"; return 1; }
		n=$((n + 1))
	done
	echo "reader in $1: $n rounds"
	[ $n -gt 0 ]
}
layer_churn() {
	i=0
	while [ "$(date +%s)" -lt "$end" ]; do
		lcfs layer clone img k$i -m /mnt || return 1
		dd if=/dev/urandom of=/mnt/k$i/f bs=4k count=8 seek=$((i % 64)) conv=notrunc 2>/dev/null || return 1
		lcfs layer snapshot k$i s$i -m /mnt || return 1
		[ "$(md5sum </mnt/s$i/f)" = "$(md5sum </mnt/k$i/f)" ] || { echo "snapshot s$i differs"; return 1; }
		# A frozen snapshot walked just before its removal: the same tree as the image.
		[ "$(tree_of s$i)" = "$tree" ] || { echo "walk of snapshot s$i differs"; return 1; }
		lcfs layer remove s$i -m /mnt || return 1
		lcfs layer remove k$i -m /mnt || return 1
		i=$((i + 1))
	done
	echo "layer churn: $i rounds"
	[ $i -gt 0 ]
}
# A digest of a layer's tree: path, mode, size, link count, device and symlink target of every
# entry (lookups, listings and inodes of frozen layers are read without the volume lock too;
# dropping caches makes the walks cold). An error on the way fails it.
tree_of() {
	chroot /debian python3 -c '
import hashlib, os, sys
top = sys.argv[1]
h, n = hashlib.md5(), 0
def walk_error(e):
    raise e
for d, dirs, files in os.walk(top, onerror=walk_error):
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(d, name)
        st = os.lstat(p)
        link = os.readlink(p) if os.path.islink(p) else ""
        h.update(f"{os.path.relpath(p, top)} {st.st_mode:o} {st.st_size} {st.st_nlink} {st.st_rdev} {link}\n".encode())
        n += 1
print(n, h.hexdigest())
' "/mnt/$1"
}
img_walker() {
	n=0
	while [ "$(date +%s)" -lt "$end" ]; do
		s=$(tree_of img)
		[ "$s" = "$tree" ] || { echo "walk of img: listing $s, expected $tree"; return 1; }
		n=$((n + 1))
	done
	echo "walker: $n rounds"
	[ $n -gt 0 ]
}
cache_dropper() {
	while [ "$(date +%s)" -lt "$end" ]; do
		sync
		echo 3 >/proc/sys/vm/drop_caches
		sleep 1
	done
}

# Runs the cache dropper beside the workers `$1` (their pids) until they are done; fails unless
# every worker succeeded.
wait_workers() {
	cache_dropper &
	dropper=$!
	bad=0
	for p in $1; do wait "$p" || bad=$((bad + 1)); done
	wait $dropper
	assert_eq "$bad" 0 "failed workers"
}

t_layers_under_reads() {
	lcfs layer create img -m /mnt
	head -c $((8 << 20)) /dev/urandom >/mnt/img/f
	want=$(md5sum </mnt/img/f | cut -d' ' -f1)
	# A tree to walk: directories of many entries, symlinks of short and long targets, a
	# device node and hard links.
	for d in 0 1 2; do
		mkdir -p /mnt/img/d$d/sub
		i=0
		while [ $i -lt 150 ]; do
			echo "$d $i" >/mnt/img/d$d/file-with-a-long-name-$i
			i=$((i + 1))
		done
		ln -s "../d$d/file-with-a-long-name-7" /mnt/img/d$d/sub/short
		ln -s "$(head -c 3000 /dev/zero | tr '\0' x)" /mnt/img/d$d/sub/long
		ln /mnt/img/d$d/file-with-a-long-name-3 /mnt/img/d$d/sub/hard
	done
	mknod /mnt/img/d0/null c 1 3
	tree=$(tree_of img)
	lcfs layer freeze img -m /mnt
	# The frozen layer, as its first walk (after dropping caches) finds it.
	echo 3 >/proc/sys/vm/drop_caches
	assert_eq "$(tree_of img)" "$tree" "frozen image's tree"
	assert_eq "${tree% *}" 467 "entries of the image"
	lcfs layer clone img r1 -m /mnt
	lcfs layer clone img r2 -m /mnt
	end=$(stop_at)
	pids=""
	for r in r1 r2; do
		img_reader $r &
		pids="$pids $!"
	done
	layer_churn &
	pids="$pids $!"
	img_walker &
	pids="$pids $!"
	wait_workers "$pids"
	# --wait: the background reclaim of the removed trees holds the whole volume in bursts, which
	# the next test's shrinker measurement must not meet.
	for l in r1 r2 img; do lcfs layer remove --wait $l -m /mnt; done
	assert_eq "$(ls -A /mnt)" "default" "layers left"
}

# Writers in several layers at once (each layer's changes run beside the others', see
# Documentation/design.md, Locking): fsx in two layers, metadata churn in two others (one of
# them snapshotted again and again, each snapshot walked twice a second apart), clones of a
# frozen image made, written, snapshotted and removed, and sync and cache drops, all at once.
# Every worker checks its own results; fsck runs at the end of the suite.
setfattr() { chroot /debian setfattr "$@"; }
getfattr() { chroot /debian getfattr "$@"; }
meta_churn() {
	d=/mnt/$1
	i=0
	while [ "$(date +%s)" -lt "$end" ]; do
		mkdir "$d/dir$i" || return 1
		for f in a b c d; do echo "$1 $i $f" >"$d/dir$i/$f" || return 1; done
		mv "$d/dir$i/a" "$d/dir$i/e" || return 1
		ln "$d/dir$i/b" "$d/dir$i/f" || return 1
		ln -s e "$d/dir$i/g" || return 1
		setfattr -n user.n -v "$i" "$d/dir$i/c" || return 1
		rm "$d/dir$i/d" || return 1
		[ "$(cat "$d/dir$i/g")" = "$1 $i a" ] || { echo "churn in $1: dir$i/g reads $(cat "$d/dir$i/g")"; return 1; }
		[ "$(getfattr --absolute-names --only-values -n user.n "$d/dir$i/c")" = "$i" ] || { echo "churn in $1: xattr of dir$i/c"; return 1; }
		[ $((i % 3)) != 2 ] || rm -r "$d/dir$((i - 2))" || return 1
		i=$((i + 1))
	done
	echo "churn in $1: $i rounds"
	# What is left: the directories not removed, each with its five names.
	n=$(find "$d" -mindepth 2 | wc -l)
	want=0
	j=0
	while [ $j -lt $i ]; do
		if [ $((j % 3)) = 0 ] && [ $((j + 2)) -lt $i ]; then :; else want=$((want + 5)); fi
		j=$((j + 1))
	done
	[ "$n" = "$want" ] || { echo "churn in $1: $n names left, expected $want"; return 1; }
	[ $i -gt 0 ]
}
# Snapshots of a layer under churn stay as they were taken.
snapshot_watch() {
	i=0
	while [ "$(date +%s)" -lt "$end" ]; do
		lcfs layer snapshot $1 snap$i -m /mnt || return 1
		t=$(tree_of snap$i)
		sleep 1
		[ "$(tree_of snap$i)" = "$t" ] || { echo "snapshot snap$i of $1 changed after it was taken"; return 1; }
		lcfs layer remove snap$i -m /mnt || return 1
		i=$((i + 1))
	done
	echo "snapshots of $1: $i"
	[ $i -gt 0 ]
}
layer_fsx() {
	mkdir -p /tmp/fsx-$1
	fsx -f /tests/fsx.toml -N "${STRESS_FSX_OPS:-1500}" -S "$2" -P /tmp/fsx-$1 /mnt/$1/fsx >/tmp/fsx-$1/out 2>&1 ||
		{ tail -40 /tmp/fsx-$1/out; echo "fsx in $1 failed"; return 1; }
	grep -q 'All operations completed A-OK' /tmp/fsx-$1/out || { echo "fsx in $1 did not complete"; return 1; }
	echo "fsx in $1: $(grep -c . /tmp/fsx-$1/out) lines of output, A-OK"
}
t_writers_in_layers() {
	for l in w1 w2 m1 m2; do lcfs layer create $l -m /mnt; done
	lcfs layer create img -m /mnt
	head -c $((1 << 20)) /dev/urandom >/mnt/img/f
	want=$(md5sum </mnt/img/f | cut -d' ' -f1)
	tree=$(tree_of img)
	lcfs layer freeze img -m /mnt
	end=$(stop_at)
	pids=""
	layer_fsx w1 1 &
	pids="$pids $!"
	layer_fsx w2 2 &
	pids="$pids $!"
	for l in m1 m2; do
		meta_churn $l &
		pids="$pids $!"
	done
	snapshot_watch m1 &
	pids="$pids $!"
	layer_churn &
	pids="$pids $!"
	wait_workers "$pids"
	for l in w1 w2 m1 m2 img; do lcfs layer remove --wait $l -m /mnt; done
	assert_eq "$(ls -A /mnt)" "default" "layers left"
}

# The node cache (copies of metadata blocks, up to 16 MiB a mount) gives its memory back to the
# superblock shrinker: after 6,000 creates, a commit and a walk that reads every inode back, the
# cache holds at least 500 clean copies (`cached_nodes` of LCFS_IOC_FS_INFO, through `lcfs
# info`), and dropping slab caches frees at least three quarters of them.
cached_nodes() { lcfs info /mnt --json | awk -F'[:,]' '/"cached_nodes"/ { print $2 + 0 }'; }
t_node_cache_shrinks() {
	chroot /debian python3 -c "
import os
d = '$M/many'
os.mkdir(d)
for i in range(6000):
    os.close(os.open(f'{d}/file-with-a-name-long-enough-to-fill-nodes-{i:05}', os.O_CREAT | os.O_WRONLY, 0o644))
"
	sync
	# The commit left few node copies behind: read every inode back in through the node cache,
	# which then holds the directory's and the inodes' leaves, clean.
	echo 2 >/proc/sys/vm/drop_caches
	du -s $M/many >/dev/null
	before=$(cached_nodes)
	echo 2 >/proc/sys/vm/drop_caches
	after=$(cached_nodes)
	echo "LCFS-INFO: node cache: $before copies before dropping slab caches, $after after" >/dev/console
	[ "$before" -ge 500 ] || fail "only $before copies in the node cache after reading 6,000 inodes"
	[ $((after * 4)) -le "$before" ] || fail "$after of $before node copies left after dropping slab caches"
	[ "$(ls $M/many | wc -l)" = 6000 ] || fail "files lost"
	rm -rf $M/many
}

t_fsck_after_stress() {
	umount /debian/mnt
	umount /mnt
	fsck.lcfs -n -v "$DEV"
	mount -t lcfs "$DEV" /mnt
	assert_eq "$(ls -A $M | wc -l)" 0 "everything removed"
	umount /mnt
}

run_tests \
	setup stress_ng shared_directories layers_under_reads writers_in_layers node_cache_shrinks \
	fsck_after_stress
