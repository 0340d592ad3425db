# lcfs-needs: debian-rootfs
# lcfs-needs: guest-tools
# Layers suite: the layer ioctls through `lcfs layer` and from a raw caller (layer_abi.py):
# create, clone chains, copy-on-write isolation, snapshot under writes, freeze with and without
# writers and what a frozen layer refuses, rename, remove (busy, with children, space returned),
# unprivileged callers and user namespaces, persistence, each checked with fsck.lcfs.
. /tests/lib.sh

DEV=/dev/vda
M=/mnt

layer() { lcfs layer "$@" -m $M; }
# Debian tools see the lcfs mount through a bind mount at the same path inside /debian.
bind_debian() { mount --bind /mnt /debian/mnt; }
unbind_debian() { umount /debian/mnt; }
# The checksums of every file under DIR, by path relative to it.
tree_sums() { (cd "$1" && find . -type f | sort | xargs md5sum); }
free_blocks() { sync; stat -f -c %f $M; }
# expect_error TEXT CMD...: CMD fails and says TEXT.
expect_error() {
	_want=$1
	shift
	if "$@" 2>/tmp/err; then fail "$* succeeded"; fi
	grep -q "$_want" /tmp/err || fail "$*: expected '$_want', got '$(cat /tmp/err)'"
}
# The state of layer NAME ("rw" or "ro") and its parent's name, from `lcfs layer list`.
state() { lcfs layer list -m $M | awk -v n="$1" '$2 == n { print $4 }'; }

t_setup() {
	cp /tests/layer_abi.py /tmp/
	mkfs.lcfs -q "$DEV"
	mount -t lcfs "$DEV" $M
	dd if=/dev/urandom of=/tmp/rand bs=1M count=4 2>/dev/null
}

t_create() {
	# Looked up before it exists: the cached negative entry must not hide the new layer.
	[ ! -e $M/base ] || fail "base exists before it was made"
	layer create base
	# The new layer is a directory of the mount root at once, empty.
	[ -d $M/base ] || fail "no directory for the new layer"
	assert_eq "$(ls -A $M/base | wc -l)" 0 "entries of a new layer"
	assert_eq "$(state base)" rw "state"
	mkdir -p $M/base/etc $M/base/usr/bin
	i=0
	while [ $i -lt 40 ]; do
		echo "file $i" >$M/base/etc/f$i
		i=$((i + 1))
	done
	cp /tmp/rand $M/base/usr/bin/big
	ln -s ../etc/f1 $M/base/usr/link
	tree_sums $M/base >/tmp/base.sums
	expect_error 'exists' layer create base
	expect_error 'Invalid argument' layer create ..
}

t_freeze_with_writer() {
	exec 3>>$M/base/etc/f0
	expect_error 'busy' layer freeze base
	assert_eq "$(state base)" rw "state after a refused freeze"
	exec 3>&-
	layer freeze base
	assert_eq "$(state base)" ro "state"
	# Freezing again is no change.
	layer freeze base
}

# Every way of changing a frozen layer answers EROFS, and nothing changed.
t_frozen_refuses_changes() {
	expect_error 'Read-only' sh -c "echo x >>$M/base/etc/f0"
	expect_error 'Read-only' touch $M/base/new
	expect_error 'Read-only' mkdir $M/base/newdir
	expect_error 'Read-only' rm $M/base/etc/f1
	expect_error 'Read-only' chmod 600 $M/base/etc/f2
	expect_error 'Read-only' chown 1:1 $M/base/etc/f2
	expect_error 'Read-only' truncate -s 0 $M/base/etc/f3
	expect_error 'Read-only' mv $M/base/etc/f4 $M/base/etc/f4b
	expect_error 'Read-only' ln $M/base/etc/f5 $M/base/etc/f5b
	expect_error 'Read-only' touch -d @0 $M/base/etc/f6
	bind_debian
	rc=0
	chroot /debian setfattr -n user.x -v 1 $M/base/etc/f7 2>/tmp/err || rc=$?
	chroot /debian xfs_io -c 'mmap -w 0 4096' -c 'mwrite 0 16' $M/base/usr/bin/big 2>>/tmp/err || rc=$((rc + 10))
	unbind_debian
	[ $rc -ge 11 ] || fail "setfattr or a writable mapping worked on a frozen layer ($rc)"
	grep -c 'Read-only' /tmp/err | grep -q 2 || fail "expected EROFS twice: $(cat /tmp/err)"
	tree_sums $M/base | cmp - /tmp/base.sums
}

# A chain of read-only clones 128 deep: the data at the bottom is the data at the top.
t_clone_chain() {
	prev=base
	i=1
	while [ $i -le 128 ]; do
		layer clone $prev d$i --readonly
		prev=d$i
		i=$((i + 1))
	done
	assert_eq "$(state d128)" ro "state of a read-only clone"
	tree_sums $M/d128 | cmp - /tmp/base.sums
	tree_sums $M/d64 | cmp - /tmp/base.sums
}

# Clones share their parent's blocks until they change them, one 4 KiB block at a time; no
# change reaches the parent or a sibling.
t_cow_isolation() {
	layer clone d128 w1
	layer clone d128 w2
	before=$(free_blocks)
	# One byte into the 4 MiB file: one new block (and a few of metadata).
	printf 'Z' | dd of=$M/w1/usr/bin/big bs=1 seek=1000000 conv=notrunc 2>/dev/null
	after=$(free_blocks)
	used=$((before - after))
	echo "a one-byte write into a shared 4 MiB file took $used blocks"
	[ "$used" -ge 1 ] && [ "$used" -le 16 ] || fail "a one-byte write took $used blocks"
	echo new >$M/w1/etc/added
	rm $M/w1/etc/f9
	echo changed >$M/w2/etc/f10
	tree_sums $M/d128 | cmp - /tmp/base.sums
	tree_sums $M/base | cmp - /tmp/base.sums
	[ ! -e $M/w2/etc/added ] && [ -e $M/w2/etc/f9 ] || fail "w1's changes reached w2"
	assert_eq "$(cat $M/w1/etc/f10)" "file 10" "w2's change reached w1"
	cmp -s /tmp/rand $M/w1/usr/bin/big && fail "w1's write is missing"
	cmp /tmp/rand $M/w2/usr/bin/big
	# The layer of a path, and the listings.
	lcfs layer show -m $M/w1/etc
	lcfs layer show -m $M/w1/etc | grep -q '^name *w1$'
	lcfs layer show d128 -m $M | grep -q '^parent *d127 '
	lcfs layer list -m $M --json | grep -q '"name": "w2"'
	lcfs df $M
	assert_eq "$(lcfs df $M --json | grep -c '"name"')" 132 "layers in lcfs df"
}

# A layer's own bytes: what its writes allocated (containerd's Usage). A clone starts with none;
# rewriting one byte of an inherited 4 MiB file copies one 4 KiB block; a new file adds its
# size; deleting the inherited file takes nothing from them, deleting its own files does; a
# snapshot counts its source's. Unprivileged callers see their own layer's figure too.
own() { sync; lcfs layer show "$1" -m $M | awk '$1 == "own" { gsub(/[(]/, "", $3); print $3 }'; }
t_own_bytes() {
	layer clone d128 own1
	assert_eq "$(own own1)" 0 "own bytes of a new clone"
	printf 'Z' | dd of=$M/own1/usr/bin/big bs=1 seek=1000000 conv=notrunc 2>/dev/null
	assert_eq "$(own own1)" 4096 "own bytes after a one-byte write into an inherited file"
	head -c 1048576 /tmp/rand >$M/own1/new
	assert_eq "$(own own1)" $((4096 + 1048576)) "own bytes after a new 1 MiB file"
	layer snapshot own1 own1-snap
	assert_eq "$(own own1-snap)" $((4096 + 1048576)) "own bytes of a snapshot"
	rm $M/own1/new
	assert_eq "$(own own1)" 4096 "own bytes after deleting the new file"
	rm $M/own1/usr/bin/big
	assert_eq "$(own own1)" 0 "own bytes after deleting the rewritten inherited file"
	assert_eq "$(own own1-snap)" $((4096 + 1048576)) "the snapshot's own bytes"
	assert_eq "$(own d128)" 0 "own bytes of an untouched clone"
	lcfs layer list -m $M --bytes | grep -w own1
	layer remove own1-snap own1
}

# fsx in a clone while its frozen parent is read back and checksummed the whole time: no
# operation of the clone (writes, mmap writes, truncates, copy-on-write of shared blocks)
# reaches the parent. The parent's fsx file was made by fsx too; the clone's fsx rewrites it
# from scratch, and a writer rewrites scattered blocks of a shared 4 MiB file meanwhile.
# LAYERS_FSX_OPS operations in the clone (make test 2000, make soak 10000).
t_fsx_on_clone() {
	layer create fsxp
	mkdir -p /tmp/fsxp /tmp/fsxc
	fsx -N 2000 -S 7 -P /tmp/fsxp $M/fsxp/f >/tmp/fsxp/out 2>&1 || { tail -20 /tmp/fsxp/out; fail "fsx in the parent"; }
	cp /tmp/rand $M/fsxp/g
	layer freeze fsxp
	layer clone fsxp fsxc
	sums() { md5sum $M/fsxp/f $M/fsxp/g | cut -d' ' -f1; }
	sums >/tmp/fsxp.sums
	: >/tmp/fsxp.bad
	(
		n=0
		while [ ! -e /tmp/fsxp.stop ]; do
			echo 3 >/proc/sys/vm/drop_caches
			sums | cmp -s - /tmp/fsxp.sums || echo "round $n: the parent changed" >>/tmp/fsxp.bad
			n=$((n + 1))
		done
		echo "$n" >/tmp/fsxp.rounds
	) &
	checker=$!
	i=0
	while [ $i -lt 64 ]; do
		printf 'C%04d' $i | dd of=$M/fsxc/g bs=1 seek=$((i * 65536 + 17)) conv=notrunc 2>/dev/null
		i=$((i + 1))
	done
	rc=0
	fsx -f /tests/fsx.toml -N "${LAYERS_FSX_OPS:-2000}" -S 8 -P /tmp/fsxc $M/fsxc/f >/tmp/fsxc/out 2>&1 || rc=$?
	touch /tmp/fsxp.stop
	wait $checker
	rm /tmp/fsxp.stop
	[ $rc = 0 ] || { tail -40 /tmp/fsxc/out; fail "fsx in the clone"; }
	grep -q 'All operations completed A-OK' /tmp/fsxc/out || fail "fsx in the clone did not complete"
	echo "the parent was checksummed $(cat /tmp/fsxp.rounds) times while fsx ran"
	[ "$(cat /tmp/fsxp.rounds)" -ge 2 ] || fail "the parent was not read during fsx"
	[ ! -s /tmp/fsxp.bad ] || fail "$(head -3 /tmp/fsxp.bad)"
	sums | cmp - /tmp/fsxp.sums
	# The clone's writes are there, and only they: the bytes around them are the parent's.
	assert_eq "$(dd if=$M/fsxc/g bs=1 skip=$((5 * 65536 + 17)) count=5 2>/dev/null)" C0005 "a clone write"
	cmp -s $M/fsxc/g $M/fsxp/g && fail "the clone's writes are missing"
	diffs=$(cmp -l $M/fsxc/g $M/fsxp/g | wc -l)
	[ "$diffs" -ge 250 ] && [ "$diffs" -le 320 ] || fail "$diffs bytes differ, 320 were written"
	layer remove fsxc fsxp
}

# The paths a clone changed, against its parent and against an ancestor: additions and
# deletions exactly, modifications at least those made (reading a file may update its access
# time, which is a change of its inode too).
t_diff() {
	layer diff w1 >/tmp/diff
	cat /tmp/diff
	assert_eq "$(grep '^[AD] ' /tmp/diff | sort | tr '\n' ' ')" "A /etc/added D /etc/f9 " "added and deleted"
	grep -qx 'M /usr/bin/big' /tmp/diff || fail "the written file is not modified"
	grep -qx 'M /etc' /tmp/diff || fail "the changed directory is not modified"
	assert_eq "$(grep -c . /tmp/diff)" "$(sort -u /tmp/diff | grep -c .)" "paths reported twice"
	# d128 .. d1 changed nothing: against base the same paths.
	sort /tmp/diff >/tmp/diff.sorted
	layer diff w1 --base base | sort | diff /tmp/diff.sorted -
	layer diff d64 | grep -c . | grep -qx 0 || fail "an unchanged clone has a diff"
	expect_error 'Invalid argument' layer diff w1 --base w2
	layer diff w1 --json | grep -q '"change":"A","type":"file","path":"/etc/added"'
	assert_eq "$(layer diff w1 -0 | tr '\0' '\n' | grep -c '^A /etc/added$')" 1 "NUL-separated output"
}

# A snapshot of a layer being written holds every file fsynced before it was asked for.
t_snapshot_under_writes() {
	rm -f /tmp/synced
	(
		i=0
		while [ $i -lt 60 ]; do
			dd if=/tmp/rand of=$M/w1/s$i bs=64k count=2 conv=fsync 2>/dev/null
			echo $i >>/tmp/synced
			i=$((i + 1))
		done
	) &
	writer=$!
	while [ "$(wc -l </tmp/synced 2>/dev/null || echo 0)" -lt 10 ]; do sleep 0.2; done
	last=$(tail -1 /tmp/synced)
	layer snapshot w1 snap1
	wait $writer
	assert_eq "$(state snap1)" ro "state"
	head -c 131072 /tmp/rand >/tmp/s.want
	i=0
	while [ $i -le "$last" ]; do
		cmp /tmp/s.want $M/snap1/s$i || fail "s$i, fsynced before the snapshot, is not in it whole"
		i=$((i + 1))
	done
	n=$(ls $M/snap1 | grep -c '^s[0-9]' || true)
	echo "the snapshot holds $n files, $((last + 1)) fsynced before it"
	assert_eq "$(ls $M/w1 | grep -c '^s[0-9]')" 60 "files the writer made"
	# The source goes on being written; the snapshot does not change.
	echo after >$M/w1/after-snap
	[ ! -e $M/snap1/after-snap ] || fail "a change after the snapshot is in it"
	expect_error 'Read-only' touch $M/snap1/x
}

# The kernel's periodic writeback stays off while a test needs data to stay dirty.
writeback_off() { echo 0 >/proc/sys/vm/dirty_writeback_centisecs; }
writeback_on() { echo 500 >/proc/sys/vm/dirty_writeback_centisecs; }
dirty_kib() { awk '$1 == "Dirty:" { print $2 }' /proc/meminfo; }
no_writeback_errors() {
	! dmesg | grep -q 'no block to write back' || fail "writeback found no block: $(dmesg | grep 'no block' | tail -3)"
}

# Data written or mapped and never synced is in a snapshot: the layer's dirty page cache is
# written back before its tree is shared.
t_snapshot_flushes() {
	head -c 8192 /tmp/rand >$M/w1/mapped
	sync
	writeback_off
	head -c 1048576 /tmp/rand >/tmp/rand1m
	cp /tmp/rand1m $M/w1/unsynced
	bind_debian
	# 0x5a is 'Z'; the mapping is dropped without msync, its page left dirty.
	chroot /debian xfs_io -c 'mmap -w 0 4096' -c 'mwrite -S 0x5a 0 4096' $M/w1/mapped
	unbind_debian
	[ "$(dirty_kib)" -ge 900 ] || fail "the writes are not dirty in the page cache ($(dirty_kib) KiB)"
	layer snapshot w1 snap2
	writeback_on
	cmp /tmp/rand1m $M/snap2/unsynced || fail "unsynced data written before the snapshot is not in it"
	assert_eq "$(head -c 4096 $M/snap2/mapped | tr -d Z | wc -c)" 0 "bytes of the mapped page not written through the mapping"
	layer remove snap2
}

# The same past the list of files a layer's changes touched (4096 entries): 4,200 files written
# first fill it, so the layer's flush must walk every cached inode to find the last ones.
t_snapshot_flushes_past_the_list() {
	layer create many
	writeback_off
	mkdir $M/many/d
	i=0
	while [ $i -lt 4200 ]; do echo "$i" >$M/many/d/f$i; i=$((i + 1)); done
	cp /tmp/rand1m $M/many/last
	layer snapshot many many-snap
	writeback_on
	cmp /tmp/rand1m $M/many-snap/last || fail "unsynced data written after the list was full is not in the snapshot"
	assert_eq "$(cat $M/many-snap/d/f4199)" 4199 "the last small file"
	assert_eq "$(cat $M/many-snap/d/f0)" 0 "the first small file"
	layer remove many-snap
	layer remove many
}

# Holding one layer still leaves the others' dirty data alone: a freeze, a snapshot and a
# removal write back only their layer's page cache.
t_hold_spares_other_layers() {
	layer create other
	layer create idle
	echo x >$M/idle/f
	sync
	writeback_off
	dd if=/tmp/rand of=$M/other/dirty bs=1M count=4 2>/dev/null
	i=0
	while [ $i -lt 15 ]; do cat /tmp/rand >>$M/other/dirty; i=$((i + 1)); done
	before=$(dirty_kib)
	[ "$before" -ge 60000 ] || fail "64 MiB written, $before KiB dirty"
	echo y >>$M/idle/f
	layer freeze idle
	layer snapshot w1 snap3
	layer remove snap3
	layer remove idle
	after=$(dirty_kib)
	writeback_on
	echo "dirty: $before KiB before holding other layers, $after KiB after"
	[ "$after" -ge $((before - 4096)) ] || fail "another layer's dirty data was written back ($before KiB dirty before, $after after)"
	sync
	i=0
	while [ $i -lt 16 ]; do cat /tmp/rand; i=$((i + 1)); done | cmp - $M/other/dirty
	layer remove other
}

# A snapshot taken while a file is overwritten holds one whole version of it: no write is split
# by it, whether the write goes in place, to a staging block, or to a new one.
t_snapshot_point_in_time() {
	head -c 131072 /tmp/rand >/tmp/va
	tail -c 131072 /tmp/rand >/tmp/vb
	cp /tmp/va $M/w1/pit
	sync
	(
		i=0
		while [ ! -e /tmp/pit.stop ] && [ $i -lt 3000 ]; do
			dd if=/tmp/va of=$M/w1/pit bs=128k count=1 conv=notrunc 2>/dev/null
			dd if=/tmp/vb of=$M/w1/pit bs=128k count=1 conv=notrunc 2>/dev/null
			i=$((i + 1))
		done
	) &
	writer=$!
	k=1
	while [ $k -le 12 ]; do
		layer snapshot w1 pit$k
		cmp -s /tmp/va $M/pit$k/pit || cmp -s /tmp/vb $M/pit$k/pit ||
			fail "snapshot $k holds neither version of a file overwritten under it"
		k=$((k + 1))
	done
	touch /tmp/pit.stop
	wait $writer
	rm /tmp/pit.stop
	sync
	no_writeback_errors
	k=1
	while [ $k -le 12 ]; do layer remove pit$k; k=$((k + 1)); done
}

# Small overwrites of a file's own written blocks go in place, and the file keeps their
# mapping between calls without the volume lock; a snapshot shares those blocks, so the next
# overwrite must copy them and the snapshot keep what it holds, in the page cache and on disk.
# ow_check FILE WRITE: ow-snap's FILE is /tmp/ow.snap and ow's /tmp/ow.live, in the page cache and
# after a sync and a drop of caches; writeback found every block (WRITE: what changed them).
ow_check() {
	for where in "page cache" disk; do
		if [ "$where" = disk ]; then
			sync
			echo 3 >/proc/sys/vm/drop_caches
		fi
		cmp /tmp/ow.snap $M/ow-snap/$1 || fail "an $2 after the snapshot changed it ($where)"
		cmp /tmp/ow.live $M/ow/$1 || fail "the ${2}s after the snapshot are not in the layer ($where)"
	done
	no_writeback_errors
}

t_overwrites_after_snapshot() {
	layer create ow
	head -c 65536 /dev/zero | tr '\0' a >$M/ow/f
	sync
	# 1,000 writes of 4 bytes into block 0: the first maps it, the rest reuse the mapping.
	head -c 4000 /dev/zero | tr '\0' b | dd of=$M/ow/f bs=4 conv=notrunc 2>/dev/null
	layer snapshot ow ow-snap
	head -c 4000 /dev/zero | tr '\0' c | dd of=$M/ow/f bs=4 conv=notrunc 2>/dev/null
	{ head -c 4000 /dev/zero | tr '\0' b; head -c 61536 /dev/zero | tr '\0' a; } >/tmp/ow.snap
	{ head -c 4000 /dev/zero | tr '\0' c; head -c 61536 /dev/zero | tr '\0' a; } >/tmp/ow.live
	ow_check f overwrite
	# The same for appends, which mostly copy into the dirty last folio without mapping it: the
	# snapshot cleans that folio, and the next append must map (and copy) its block again.
	layer remove ow-snap
	head -c 2000 /dev/zero | tr '\0' a | dd of=$M/ow/log bs=4 oflag=append conv=notrunc 2>/dev/null
	sync
	head -c 2000 /dev/zero | tr '\0' b | dd of=$M/ow/log bs=4 oflag=append conv=notrunc 2>/dev/null
	layer snapshot ow ow-snap
	head -c 4000 /dev/zero | tr '\0' c | dd of=$M/ow/log bs=4 oflag=append conv=notrunc 2>/dev/null
	{ head -c 2000 /dev/zero | tr '\0' a; head -c 2000 /dev/zero | tr '\0' b; } >/tmp/ow.snap
	{ cat /tmp/ow.snap; head -c 4000 /dev/zero | tr '\0' c; } >/tmp/ow.live
	ow_check log append
	layer remove ow-snap
	layer remove ow
}

# Layer changes need write access to the mount, as writes do: a read-only bind mount refuses
# them, and while the filesystem is frozen (fsfreeze) they wait, writing nothing meanwhile.
t_write_access() {
	mkdir -p /tmp/robind
	mount --bind $M /tmp/robind
	mount -o remount,bind,ro /tmp/robind
	expect_error 'Read-only' lcfs layer create viaro -m /tmp/robind
	expect_error 'Read-only' lcfs layer freeze w1 -m /tmp/robind
	umount /tmp/robind
	fsfreeze --freeze $M
	gen=$(lcfs info $M --json | awk '/"generation"/ { print $2 + 0 }')
	layer create during-freeze &
	creator=$!
	sleep 2
	kill -0 $creator 2>/dev/null || fail "a layer was created while the filesystem was frozen"
	assert_eq "$(lcfs info $M --json | awk '/"generation"/ { print $2 + 0 }')" "$gen" "generation while frozen"
	fsfreeze --unfreeze $M
	wait $creator || fail "the creation failed after the thaw"
	[ -d $M/during-freeze ] || fail "no layer after the thaw"
	[ "$(lcfs info $M --json | awk '/"generation"/ { print $2 + 0 }')" -gt "$gen" ] || fail "no commit"
	layer remove during-freeze
}

# retry_busy CMD...: runs CMD until it stops failing with EBUSY (500 tries at most); any other
# failure fails the test. Leaves the number of busy tries in busy_tries.
retry_busy() {
	busy_tries=0
	until "$@" 2>/tmp/err; do
		grep -q busy /tmp/err || fail "$*: $(cat /tmp/err)"
		busy_tries=$((busy_tries + 1))
		[ $busy_tries -lt 500 ] || fail "$*: still busy after 500 tries"
	done
}

# Freeze racing opens for writing: each open either came first (the freeze is EBUSY and tried
# again) or comes after and is EROFS; what the frozen layer holds is what reaches the disk.
t_freeze_races_writers() {
	layer create racer
	(
		n=0
		while echo "line $n" >>$M/racer/f 2>/dev/null; do n=$((n + 1)); done
		echo $n >/tmp/racer.n
	) &
	writer=$!
	sleep 1
	retry_busy layer freeze racer
	wait $writer
	echo "froze after $busy_tries busy tries, $(cat /tmp/racer.n) appends"
	expect_error 'Read-only' sh -c "echo x >>$M/racer/f"
	assert_eq "$(wc -l <$M/racer/f)" "$(cat /tmp/racer.n)" "lines in the frozen file"
	before=$(md5sum <$M/racer/f)
	echo 3 >/proc/sys/vm/drop_caches
	assert_eq "$(md5sum <$M/racer/f)" "$before" "the frozen file read back from disk"
}

# Remove racing lookups into the layer: each removal attempt is EBUSY while a lookup holds the
# layer, or succeeds; then the layer is gone for every path.
t_remove_races_lookups() {
	layer clone racer victim --readonly
	(
		while [ ! -e /tmp/victim.stop ]; do
			# They fail once the layer is gone; that is no failure of the looker.
			cat $M/victim/f >/dev/null 2>&1 || :
			ls $M/victim >/dev/null 2>&1 || :
			stat $M/victim/f >/dev/null 2>&1 || :
		done
	) &
	looker=$!
	sleep 1
	retry_busy layer remove victim
	touch /tmp/victim.stop
	wait $looker
	rm /tmp/victim.stop
	echo "removed after $busy_tries busy tries"
	[ ! -e $M/victim ] || fail "the removed layer is still there"
	expect_error 'No such' cat $M/victim/f
	layer remove racer
}

t_rename() {
	mkdir -p /tmp/bm
	mount --bind $M/w2 /tmp/bm
	layer rename w2 w2b
	[ ! -e $M/w2 ] || fail "the old name is still there"
	[ -d $M/w2b ] || fail "the new name is missing"
	assert_eq "$(cat $M/w2b/etc/f10)" changed "data under the new name"
	# A bind mount of the layer made before keeps working.
	assert_eq "$(cat /tmp/bm/etc/f10)" changed "data through the bind mount"
	umount /tmp/bm
	expect_error 'exists' layer rename w2b w1
}

t_remove_refused() {
	expect_error 'not empty' layer remove base
	# In use: a working directory, an open file, a bind mount.
	(cd $M/w2b/etc && sleep 30) &
	cwd=$!
	sleep 1
	expect_error 'busy' layer remove w2b
	kill $cwd
	wait $cwd || true
	exec 3<$M/w2b/etc/f10
	expect_error 'busy' layer remove w2b
	exec 3<&-
	mount --bind $M/w2b /tmp/bm
	expect_error 'busy' layer remove w2b
	umount /tmp/bm
	[ -d $M/w2b ] || fail "a refused removal removed the layer"
	assert_eq "$(cat $M/w2b/etc/f10)" changed "data after refused removals"
}

# Removing a layer gives back the space its changes took: all but what the layer tree may keep
# (creating a layer or queueing a removed one's tree can split a node of it, and removals do
# not merge them back); the
# exact count is fsck's, at the end. The call returns at once and the space comes back in the
# background: --wait waits for it, and a layer of thousands of inodes goes in chunks.
t_remove_returns_space() {
	before=$(free_blocks)
	layer clone d128 tmp
	cp /tmp/rand $M/tmp/copy
	mkdir $M/tmp/dir
	i=0
	while [ $i -lt 3000 ]; do echo $i >$M/tmp/dir/n$i; i=$((i + 1)); done
	[ "$(free_blocks)" -lt $((before - 1024)) ] || fail "the writes took no space"
	# Dirty when the layer goes: written back (or dropped) first, never into freed blocks.
	cp /tmp/rand $M/tmp/unsynced
	layer remove --wait tmp
	no_writeback_errors
	[ ! -e $M/tmp ] || fail "the removed layer's directory is still there"
	assert_eq "$(lcfs df $M --json | awk '/"reclaim_queued"/ { print $2 }')" "0," "reclaim queue after --wait"
	after=$(free_blocks)
	echo "free blocks: $before before the layer, $after after its removal"
	[ "$after" -le "$before" ] && [ "$after" -ge $((before - 8)) ] ||
		fail "$after free blocks after the removal, $before before"
	layer remove w2b
	lcfs layer list -m $M | grep -qw w2b && fail "w2b still listed"
	expect_error 'No such' layer remove w2b
}

# FIEMAP (`filefrag -v`, e2fsprogs) marks the blocks a layer shares with another: a clone's
# file is shared whole, a block the clone rewrites is its own, and its parent's old copy of that
# block too; after the clone's removal nothing is shared. `layout FILE` prints runs of blocks
# "FIRST LAST shared|own" (adjacent extents of the same kind merged) and checks that the extents
# cover the file.
layout() {
	chroot /debian /usr/sbin/filefrag -v "$1" >/tmp/filefrag.out || { cat /tmp/filefrag.out; fail "filefrag $1"; }
	awk -F: '/^ *[0-9]+:/ {
		split($2, l, "[.][.]"); s = l[1] + 0; e = l[2] + 0
		k = ($0 ~ /shared/) ? "shared" : "own"
		if (n && k == kind && s == last + 1) { last = e; next }
		if (n) print first, last, kind
		if (s != (n ? last + 1 : 0)) print "gap before", s
		first = s; last = e; kind = k; n++
	}
	END { if (n) print first, last, kind }' /tmp/filefrag.out
}
# The physical block of logical block 0.
physical0() { awk -F: '/^ *0:/ { split($3, p, "[.][.]"); print p[1] + 0 }' /tmp/filefrag.out; }

t_fiemap() {
	layer create fm
	dd if=/dev/urandom of=$M/fm/f bs=64k count=16 conv=fsync 2>/dev/null
	bind_debian
	assert_eq "$(layout $M/fm/f)" "0 255 own" "a file of a layer without clones"
	layer freeze fm
	layer clone fm fmc
	assert_eq "$(layout $M/fmc/f)" "0 255 shared" "the clone's file"
	clone0=$(physical0)
	assert_eq "$(layout $M/fm/f)" "0 255 shared" "the parent's file"
	assert_eq "$(physical0)" "$clone0" "the block the parent and the clone share"
	dd if=/dev/urandom of=$M/fmc/f bs=4k count=1 seek=100 conv=notrunc,fsync 2>/dev/null
	assert_eq "$(layout $M/fmc/f | tr '\n' ,)" "0 99 shared,100 100 own,101 255 shared," "the clone after a write"
	assert_eq "$(layout $M/fm/f | tr '\n' ,)" "0 99 shared,100 100 own,101 255 shared," "the parent after the clone's write"
	# FALLOC_FL_UNSHARE_RANGE (xfs_io funshare) gives the clone its own copy of blocks 0-99,
	# with the same contents; the parent's copies are then its own too.
	before=$(md5sum <$M/fmc/f)
	chroot /debian /usr/sbin/xfs_io -c "funshare 0 409600" $M/fmc/f
	sync
	assert_eq "$(md5sum <$M/fmc/f)" "$before" "the clone's contents after the unshare"
	assert_eq "$(layout $M/fmc/f | tr '\n' ,)" "0 100 own,101 255 shared," "the clone after an unshare"
	assert_eq "$(layout $M/fm/f | tr '\n' ,)" "0 100 own,101 255 shared," "the parent after the clone's unshare"
	echo 3 >/proc/sys/vm/drop_caches
	assert_eq "$(md5sum <$M/fmc/f)" "$before" "the clone's contents read back"
	layer remove --wait fmc
	assert_eq "$(layout $M/fm/f | tr '\n' ,)" "0 255 own," "the parent after the clone's removal"
	unbind_debian
	layer remove fm
}

# Direct writes (O_DIRECT) into a clone's file copy the blocks it shares with its parent, as
# buffered writes do: the parent's file keeps its contents, and its blocks stay its own.
t_direct_io() {
	layer create dio
	dd if=/dev/urandom of=$M/dio/f bs=64k count=16 conv=fsync 2>/dev/null
	layer freeze dio
	layer clone dio dioc
	parent=$(md5sum <$M/dio/f)
	bind_debian
	assert_eq "$(layout $M/dioc/f)" "0 255 shared" "the clone's file"
	# One block, then 16 blocks from block 10, straight to the device.
	dd if=/dev/urandom of=/tmp/dio.blocks bs=4k count=17 2>/dev/null
	chroot /debian dd if=/tmp/dio.blocks of=/mnt/dioc/f bs=4k count=1 seek=100 oflag=direct conv=notrunc status=none ||
		fail "direct write of one block"
	chroot /debian dd if=/tmp/dio.blocks of=/mnt/dioc/f bs=64k count=1 skip=4096 iflag=skip_bytes \
		seek=40960 oflag=direct,seek_bytes conv=notrunc status=none || fail "direct write of 16 blocks"
	cp $M/dio/f /tmp/dio.want
	dd if=/tmp/dio.blocks of=/tmp/dio.want bs=4k count=1 seek=100 conv=notrunc 2>/dev/null
	dd if=/tmp/dio.blocks of=/tmp/dio.want bs=4k count=16 skip=1 seek=10 conv=notrunc 2>/dev/null
	assert_eq "$(layout $M/dioc/f | tr '\n' ,)" "0 9 shared,10 25 own,26 99 shared,100 100 own,101 255 shared," "the clone after direct writes"
	assert_eq "$(md5sum <$M/dio/f)" "$parent" "the parent's contents"
	cmp /tmp/dio.want $M/dioc/f || fail "the clone's contents"
	echo 3 >/proc/sys/vm/drop_caches
	assert_eq "$(md5sum <$M/dio/f)" "$parent" "the parent's contents read back"
	cmp /tmp/dio.want $M/dioc/f || fail "the clone's contents read back"
	chroot /debian dd if=/mnt/dioc/f bs=64k iflag=direct status=none | cmp /tmp/dio.want - ||
		fail "the clone's contents read directly"
	chroot /debian dd if=/mnt/dio/f bs=64k iflag=direct status=none | md5sum >/tmp/dio.sum
	assert_eq "$(cat /tmp/dio.sum)" "$parent" "the parent's contents read directly"
	unbind_debian
	layer remove --wait dioc
	layer remove dio
}

# Idmapped mounts (FS_ALLOW_IDMAP): a bind mount of a layer with the idmapping of a user namespace
# whose root is host uid 100000 (open_tree, mount_setattr with MOUNT_ATTR_IDMAP, move_mount from
# python3). Through it the host sees the layer's owners shifted by 100000, and a process in that
# namespace (the container) sees them as they are stored: root's files are its own, and what it
# creates or chowns is stored with its own ids.
cat >/debian/tmp/idmap.py <<'PY'
import ctypes, os, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def sc(nr, *args):
    r = libc.syscall(nr, *args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


OPEN_TREE, MOVE_MOUNT, MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_EMPTY_PATH, AT_FDCWD = 1, 0x1000, -100
MOUNT_ATTR_IDMAP, MOVE_MOUNT_F_EMPTY_PATH, CLONE_NEWUSER = 0x100000, 4, 0x10000000
layer, target, holder = sys.argv[1], sys.argv[2], sys.argv[3]


def owner(p):
    st = os.lstat(p)
    return f"{st.st_uid}:{st.st_gid}"


def try_create(p):
    try:
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        return "created " + owner(p)
    except OSError as e:
        return "refused: " + os.strerror(e.errno)


def as_ids(uid, gid, join=None):
    """Runs the rest of the caller in a child with these ids (in user namespace `join`)."""
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    if join is not None and libc.setns(join, CLONE_NEWUSER) != 0:
        print("setns:", os.strerror(ctypes.get_errno()))
        os._exit(1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    return None


# The user namespace (made by the caller outside the chroot, where one cannot be made): its root
# is host uid and gid 100000.
for f in ("uid_map", "gid_map"):
    with open(f"/proc/{holder}/{f}", "w") as m:
        m.write("0 100000 65536\n")
userns = os.open(f"/proc/{holder}/ns/user", os.O_RDONLY)
tree = sc(OPEN_TREE, AT_FDCWD, layer.encode(), OPEN_TREE_CLONE)
attr = struct.pack("QQQQ", MOUNT_ATTR_IDMAP, 0, 0, userns)
sc(MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, attr, len(attr))
sc(MOVE_MOUNT, tree, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH)
print("host: f", owner(f"{target}/f"), "g", owner(f"{target}/g"))
print("host as root:", try_create(f"{target}/made-by-root"))
sys.stdout.flush()
# The container: root of the user namespace.
r = as_ids(0, 0, join=userns)
if r is None:
    print("container: f", owner(f"{target}/f"), "g", owner(f"{target}/g"))
    print("container:", try_create(f"{target}/made-in-container"))
    os.mkdir(f"{target}/dir-in-container")
    print("container: mkdir", owner(f"{target}/dir-in-container"))
    os.chown(f"{target}/g", 7, 8)
    print("container: chown g", owner(f"{target}/g"))
    print("container: unmapped owner", owner(f"{target}/unmapped"))
    sys.stdout.flush()
    os._exit(0)
print("container exit", r)
# Host uid 100005 (uid 5 in the container), through the idmapped mount.
if as_ids(100005, 100005) is None:
    print("host uid 100005:", try_create(f"{target}/made-by-100005"))
    sys.stdout.flush()
    os._exit(0)
PY

t_idmapped_mount() {
	layer create idm
	echo f >$M/idm/f
	echo g >$M/idm/g
	chown 5:6 $M/idm/g
	echo u >$M/idm/unmapped
	chown 70000:70000 $M/idm/unmapped
	chmod 777 $M/idm
	mkdir -p /debian/tmp/idm
	bind_debian
	unshare -U sleep 600 &
	holder=$!
	chroot /debian /usr/bin/python3 /tmp/idmap.py /mnt/idm /tmp/idm $holder >/tmp/idmap.out 2>&1 ||
		{ kill $holder; cat /tmp/idmap.out; fail "idmap.py"; }
	kill $holder
	cat /tmp/idmap.out
	cat >/tmp/idmap.want <<'WANT'
host: f 100000:100000 g 100005:100006
host as root: refused: Value too large for defined data type
container: f 0:0 g 5:6
container: created 0:0
container: mkdir 0:0
container: chown g 7:8
container: unmapped owner 65534:65534
container exit 0
host uid 100005: created 100005:100005
WANT
	diff /tmp/idmap.want /tmp/idmap.out || fail "owners through the idmapped mount"
	# What the layer stores, seen through the plain mount.
	assert_eq "$(stat -c '%u:%g' $M/idm/made-in-container $M/idm/dir-in-container $M/idm/g $M/idm/made-by-100005 | tr '\n' ' ')" \
		"0:0 0:0 7:8 5:5 " "owners stored"
	[ ! -e $M/idm/made-by-root ] || fail "root created a file it has no id for"
	umount /debian/tmp/idm
	unbind_debian
	layer remove idm
}

# Reflink: cp --reflink=always (FICLONE), xfs_io reflink (FICLONERANGE), dedupe
# (FIDEDUPERANGE) and copy_range (copy_file_range) share blocks within a layer and across
# read-write layers, reference-counted as clones are: a write to either file copies only what it
# writes, and space comes back when the last sharer goes.
t_reflink() {
	layer create rl
	layer create rl2
	dd if=/dev/urandom of=$M/rl/a bs=64k count=16 conv=fsync 2>/dev/null
	cp $M/rl/a /tmp/rl.a
	bind_debian
	free0=$(free_blocks)
	chroot /debian /usr/bin/cp --reflink=always /mnt/rl/a /mnt/rl/b || fail "cp --reflink=always"
	free1=$(free_blocks)
	echo "free blocks: $free0 before the reflink, $free1 after"
	[ "$free1" -ge $((free0 - 8)) ] || fail "the reflinked copy took space"
	assert_eq "$(layout $M/rl/b)" "0 255 shared" "the copy's blocks"
	assert_eq "$(layout $M/rl/a)" "0 255 shared" "the original's blocks"
	cmp /tmp/rl.a $M/rl/b || fail "the copy's contents"
	# A write into the copy: its own block there, the original unchanged.
	dd if=/dev/urandom of=$M/rl/b bs=4k count=1 seek=10 conv=notrunc,fsync 2>/dev/null
	assert_eq "$(layout $M/rl/b | tr '\n' ,)" "0 9 shared,10 10 own,11 255 shared," "the copy after a write"
	cmp /tmp/rl.a $M/rl/a || fail "the original after a write to its copy"
	# FICLONERANGE: 128 KiB of a from 64 KiB, at 0 of a new file; then into the middle of b.
	chroot /debian /usr/sbin/xfs_io -f -c "reflink /mnt/rl/a 65536 0 131072" /mnt/rl/c >/dev/null ||
		fail "xfs_io reflink"
	assert_eq "$(stat -c %s $M/rl/c)" 131072 "the range's size"
	dd if=/tmp/rl.a bs=64k skip=1 count=2 2>/dev/null | cmp - $M/rl/c || fail "the range's contents"
	assert_eq "$(layout $M/rl/c)" "0 31 shared" "the range's blocks"
	chroot /debian /usr/sbin/xfs_io -c "reflink /mnt/rl/c 0 40960 8192" /mnt/rl/b >/dev/null ||
		fail "xfs_io reflink into the middle"
	dd if=$M/rl/b bs=4k skip=10 count=2 2>/dev/null >/tmp/rl.got
	dd if=/tmp/rl.a bs=4k skip=16 count=2 2>/dev/null >/tmp/rl.want
	cmp /tmp/rl.want /tmp/rl.got || fail "the range cloned into the middle"
	# Unaligned offsets are refused, as the VFS requires.
	chroot /debian /usr/sbin/xfs_io -c "reflink /mnt/rl/a 100 0 4096" /mnt/rl/b >/tmp/rl.out 2>&1 || :
	grep -q "Invalid argument" /tmp/rl.out || { cat /tmp/rl.out; fail "an unaligned reflink"; }
	# Across read-write layers.
	chroot /debian /usr/bin/cp --reflink=always /mnt/rl/a /mnt/rl2/x || fail "cp --reflink across layers"
	assert_eq "$(layout $M/rl2/x)" "0 255 shared" "a copy in another layer"
	cmp /tmp/rl.a $M/rl2/x || fail "the copy in another layer"
	# copy_file_range shares blocks too.
	chroot /debian /usr/sbin/xfs_io -f -c "copy_range -s 0 -d 0 -l 1048576 /mnt/rl/a" /mnt/rl/e >/dev/null ||
		fail "xfs_io copy_range"
	assert_eq "$(layout $M/rl/e)" "0 255 shared" "copy_file_range's blocks"
	# Dedupe: a plain copy of a, deduplicated against it, gives its blocks back.
	chroot /debian /usr/bin/cp --reflink=never /mnt/rl/a /mnt/rl/d
	sync
	before=$(free_blocks)
	chroot /debian /usr/sbin/xfs_io -c "dedupe /mnt/rl/a 0 0 1048576" /mnt/rl/d >/tmp/dedupe.out ||
		{ cat /tmp/dedupe.out; fail "xfs_io dedupe"; }
	after=$(free_blocks)
	echo "free blocks: $before before the dedupe, $after after"
	[ "$after" -ge $((before + 250)) ] || fail "the dedupe gave no space back"
	assert_eq "$(layout $M/rl/d)" "0 255 shared" "deduplicated blocks"
	# Different contents are not deduplicated.
	dd if=/dev/urandom of=$M/rl/d bs=4k count=1 conv=notrunc,fsync 2>/dev/null
	chroot /debian /usr/sbin/xfs_io -c "dedupe /mnt/rl/a 0 0 4096" /mnt/rl/d >/tmp/dedupe.out 2>&1
	grep -q "did not match" /tmp/dedupe.out || { cat /tmp/dedupe.out; fail "dedupe of different contents"; }
	echo 3 >/proc/sys/vm/drop_caches
	cmp /tmp/rl.a $M/rl/a || fail "the original read back"
	cmp /tmp/rl.a $M/rl2/x || fail "the other layer's copy read back"
	cmp /tmp/rl.a $M/rl/e || fail "copy_file_range's copy read back"
	unbind_debian
	# Everything but a goes: a's blocks are its own again, and the space comes back.
	rm $M/rl/b $M/rl/c $M/rl/d $M/rl/e
	layer remove --wait rl2
	bind_debian
	assert_eq "$(layout $M/rl/a)" "0 255 own" "the original once the copies are gone"
	unbind_debian
	layer remove rl
}

t_abi() {
	bind_debian
	rc=0
	chroot /debian python3 /tmp/layer_abi.py admin $M || rc=$?
	unbind_debian
	assert_eq "$rc" 0 "raw ioctl checks"
}

# Without CAP_SYS_ADMIN in the initial user namespace nothing changes and only the caller's own
# layer is visible: another uid, and root of a user namespace holding a bind mount of its layer.
t_unprivileged() {
	bind_debian
	rc=0
	# Absolute paths: the guest's busybox runs its own applets before programs of that name.
	chroot /debian /usr/bin/setpriv --reuid=1000 --regid=1000 --clear-groups \
		/usr/bin/python3 /tmp/layer_abi.py unprivileged $M/w1 base || rc=$?
	# A user namespace cannot be made inside a chroot: busybox makes it, then enters /debian,
	# where the bind mount is /tmp/container.
	mkdir -p /tmp/container
	unshare -r -m sh -c "mount --bind $M/w1 /debian/tmp/container &&
		chroot /debian python3 /tmp/layer_abi.py unprivileged /tmp/container base" ||
		rc=$((rc + 10))
	unbind_debian
	assert_eq "$rc" 0 "unprivileged checks"
}

t_persistence() {
	lcfs layer list -m $M >/tmp/list.before
	tree_sums $M/w1 >/tmp/w1.sums
	umount $M
	fsck.lcfs -n -v "$DEV"
	mount -t lcfs "$DEV" $M
	lcfs layer list -m $M | diff /tmp/list.before -
	tree_sums $M/w1 | cmp - /tmp/w1.sums
	tree_sums $M/d128 | cmp - /tmp/base.sums
}

t_final_fsck() {
	umount $M
	fsck.lcfs -n -v "$DEV"
}

run_tests \
	setup create freeze_with_writer frozen_refuses_changes clone_chain cow_isolation own_bytes fsx_on_clone diff \
	snapshot_under_writes snapshot_flushes snapshot_flushes_past_the_list hold_spares_other_layers snapshot_point_in_time overwrites_after_snapshot write_access freeze_races_writers remove_races_lookups rename remove_refused remove_returns_space fiemap direct_io reflink idmapped_mount abi unprivileged \
	persistence final_fsck
