# lcfs-needs: debian-rootfs
# lcfs-needs: guest-tools
# Share suite: page-cache sharing between layers. Clones of one frozen layer read its files
# through one page-cache copy (reads, private and shared read-only mappings, exec) that
# survives remount; every way of changing a file gives the changing clone its own copy and
# leaves the others' open files and mappings alone; advice and memory pressure in one clone do
# not take the others' view; fsx in one clone beside a reader in another; no inode left at
# module unload. Each part checked with fsck.lcfs. The checks from Python live in share.py.
. /tests/lib.sh

DEV=/dev/vda
M=/mnt
# The shared file: large enough that one copy of it stands out from metadata in Cached.
MIB=16
CLONES="c1 c2 c3 c4 c5 c6 c7 c8"

layer() { lcfs layer "$@" -m $M; }
cached_kib() { awk '$1 == "Cached:" { print $2 }' /proc/meminfo; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
py() { chroot /debian python3 /tmp/share.py "$@"; }
# Debian tools see the lcfs mount through a bind mount at the same path inside /debian.
bind_debian() { mount --bind $M /debian$M; }
unbind_debian() { umount /debian$M; }
sum() { md5sum "$1" | cut -d' ' -f1; }
# check_sum FILE WHAT: FILE holds base's file as the set-up checksummed it.
check_sum() {
	_w=$(cat /tmp/f.sum)
	[ -n "$_w" ] || fail "no checksum from the set-up"
	_s=$(md5sum "$1" | cut -d' ' -f1)
	[ "$_s" = "$_w" ] || fail "$2: checksum $_s, expected $_w"
}
# read_growth CMD...: the growth of Cached (KiB) while CMD runs on cold caches.
read_growth() {
	drop
	_c0=$(cached_kib)
	# Output to /dev/null: a file in /tmp (tmpfs) would count in Cached.
	"$@" >/dev/null 2>/tmp/growth.err || { cat /tmp/growth.err >&2; return 1; }
	echo $(($(cached_kib) - _c0))
}
read_clones() { for c in $CLONES; do cat $M/$c/f; done; }
# py_growth CMD PATH...: share.py CMD's own growth of Cached (KiB) on cold caches, without the
# interpreter's files.
py_growth() {
	drop
	py growth "$@"
}
# within_one_copy GROWTH WHAT: GROWTH (KiB) is about one copy of the file, not one per clone.
within_one_copy() {
	echo "$2: Cached grew by $1 KiB for $(echo $CLONES | wc -w) clones of a $MIB MiB file"
	[ "$1" -ge $((MIB * 1024 * 9 / 10)) ] || fail "$2: grew by $1 KiB, less than the file"
	[ "$1" -le $((MIB * 1024 * 5 / 4)) ] || fail "$2: grew by $1 KiB, more than one copy"
}

t_setup() {
	# /tmp is /debian/tmp too.
	cp /tests/share.py /tmp/
	mkfs.lcfs -q "$DEV"
	mount -t lcfs "$DEV" $M
	layer create base
	head -c $((MIB << 20)) /dev/urandom >$M/base/f
	ln $M/base/f $M/base/hl
	mkdir $M/base/bin
	cp /bin/busybox $M/base/bin/busybox
	sum $M/base/f >/tmp/f.sum
	layer freeze base
	for c in $CLONES; do layer clone base $c; done
	bind_debian
}

# Reads of one file in eight clones fill one copy of the page cache, and a second pass reads
# nothing from the disk.
t_one_copy() {
	for c in $CLONES; do check_sum $M/$c/f "$c's file"; done
	g=$(read_growth read_clones)
	within_one_copy "$g" "cat"
	r0=$(awk '{ print $3 }' /sys/block/vda/stat)
	read_clones >/dev/null
	assert_eq "$(awk '{ print $3 }' /sys/block/vda/stat)" "$r0" "sectors read by a warm pass"
	# splice(2) (sendfile) serves from the same copy.
	paths=""
	for c in $CLONES; do paths="$paths $M/$c/f"; done
	g=$(py_growth sendfile $paths)
	within_one_copy "$g" "sendfile"
}

# Private and shared read-only mappings share the copy too.
t_mappings() {
	paths=""
	for c in $CLONES; do paths="$paths $M/$c/f"; done
	g=$(py_growth mapsum $paths)
	within_one_copy "$g" "mmap"
	py mapsum $paths | cut -d' ' -f1 | sort -u >/tmp/sums
	[ -s /tmp/f.sum ] && cmp /tmp/sums /tmp/f.sum || fail "checksums through mappings: $(cat /tmp/sums)"
}

# Executing one binary in every clone: it runs, its mapping names the clone's path, and writing
# it while it runs is ETXTBSY in that clone only.
t_exec() {
	for c in $CLONES; do $M/$c/bin/busybox true || fail "exec in $c"; done
	$M/c1/bin/busybox sleep 30 &
	pid=$!
	sleep 1
	grep -q "$M/c1/bin/busybox" /proc/$pid/maps || fail "maps: $(cat /proc/$pid/maps)"
	if echo x 2>/tmp/err >>$M/c1/bin/busybox; then fail "wrote a running binary"; fi
	grep -q 'busy' /tmp/err || fail "expected ETXTBSY: $(cat /tmp/err)"
	# Another clone's copy of the binary is another file.
	echo x >>$M/c2/bin/busybox
	kill $pid
	wait $pid || true
	cmp -s $M/c2/bin/busybox $M/base/bin/busybox && fail "c2's write is missing"
	cmp $M/c1/bin/busybox $M/base/bin/busybox
	$M/c3/bin/busybox true
}

# A change in one clone is its own; the other's open files and mappings never see it.
t_isolation() {
	py isolation $M c3 c4
	check_sum $M/c4/f "c4's file"
}

# Identity stays per clone while the cache is shared: inotify marks and leases.
t_identity() {
	layer clone base i1
	layer clone base i2
	py identity $M i1 i2
	check_sum $M/i1/f "i1's file"
}

# Within one clone, a mapping made before its own change keeps the shared pages.
t_same_layer() {
	py same-layer $M c5
}

# Truncating by path and changing an extended attribute also give the clone its own copy: its
# reads then fill a second one.
t_unshare_without_open() {
	g=$(read_growth cat $M/c6/f $M/c7/f)
	within_one_copy "$g" "two clones"
	chroot /debian setfattr -n user.x -v 1 $M/c6/f
	g=$(read_growth cat $M/c6/f $M/c7/f)
	echo "after setfattr in c6: Cached grew by $g KiB"
	[ "$g" -ge $((MIB * 1024 * 19 / 10)) ] || fail "c6 still reads the shared copy ($g KiB)"
	check_sum $M/c6/f "c6's file after setfattr"
	truncate -s $((MIB << 19)) $M/c7/f
	assert_eq "$(stat -c %s $M/c7/f)" $((MIB << 19)) "c7's size"
	assert_eq "$(head -c $((MIB << 19)) $M/c8/f | md5sum | cut -d' ' -f1)" "$(sum $M/c7/f)" "c7's first half"
	check_sum $M/c8/f "c8's file"
}

# The other ways of changing a file: each gives its clone its own contents while a reader's
# mapping in another clone keeps base's.
t_other_changes() {
	for c in p1 p2 p3 p4 q; do layer clone base $c; done
	# Read first: each clone's file reads through the shared cache when its change comes.
	for c in p1 p2 p3 p4; do check_sum $M/$c/f "$c's file before its change"; done
	py watch $M/q/f "$(cat /tmp/f.sum)" /tmp/other.stop >/tmp/other.out 2>&1 &
	watcher=$!
	sleep 2
	# Punch a hole, allocate past the end, write through a shared writable mapping, and open
	# read-only with O_TRUNC (Linux truncates).
	chroot /debian xfs_io -c 'fpunch 0 65536' $M/p1/f
	chroot /debian xfs_io -c "falloc $((MIB << 20)) 1048576" $M/p2/f
	chroot /debian xfs_io -c 'mmap -w 0 4096' -c 'mwrite -S 0x5a 0 4096' -c 'msync -s 0 4096' $M/p3/f
	chroot /debian python3 -c "import os; os.close(os.open('$M/p4/f', os.O_RDONLY | os.O_TRUNC))"
	touch /tmp/other.stop
	wrc=0
	wait $watcher || wrc=$?
	rm -f /tmp/other.stop
	[ $wrc = 0 ] || fail "q's reader saw a change: $(cat /tmp/other.out)"
	assert_eq "$(head -c 65536 $M/p1/f | tr -d '\0' | wc -c)" 0 "p1's punched range"
	assert_eq "$(stat -c %s $M/p2/f)" $(((MIB << 20) + 1048576)) "p2's size"
	assert_eq "$(head -c 4096 $M/p3/f | tr -d Z | wc -c)" 0 "p3's mapped write"
	assert_eq "$(stat -c %s $M/p4/f)" 0 "p4's size"
	drop
	assert_eq "$(head -c 65536 $M/p1/f | tr -d '\0' | wc -c)" 0 "p1's punched range, cold"
	assert_eq "$(head -c 4096 $M/p3/f | tr -d Z | wc -c)" 0 "p3's mapped write, cold"
	check_sum $M/q/f "q's file"
	check_sum $M/base/f "base's file"
}

# Advice and memory pressure in one clone do not take the others' view.
t_fadvise_and_pressure() {
	py fadvise $M c1 c2
	# Memory pressure: the shared copy may go and come back, never wrong.
	cat $M/c1/f >/dev/null
	head -c 700M /dev/zero | chroot /debian python3 -c 'import sys; b = sys.stdin.buffer.read(); print(len(b))'
	for c in c1 c2 c8; do check_sum $M/$c/f "$c's file after pressure"; done
}

# The shared copy survives a remount; once nothing uses it, it is freed.
t_remount() {
	# The clones that changed their file keep their own contents (their `data_id` was renewed,
	# so after the remount they do not take base's cache for theirs).
	layer clone base r1
	layer clone base r2
	printf XXXX | dd of=$M/r1/f bs=1 seek=100 conv=notrunc 2>/dev/null
	echo r2 >$M/r2/f
	for c in c3 c5 c6 c7 r1 r2; do md5sum $M/$c/f; done >/tmp/changed.sums
	unbind_debian
	umount $M
	fsck.lcfs -n "$DEV"
	mount -t lcfs "$DEV" $M
	bind_debian
	drop
	for c in c3 c5 c6 c7 r1 r2; do md5sum $M/$c/f; done | diff /tmp/changed.sums -
	CLONES="c1 c2 c4 c8"
	g=$(read_growth read_clones)
	within_one_copy "$g" "after remount"
	c0=$(cached_kib)
	drop
	c1=$(cached_kib)
	echo "dropping caches freed $((c0 - c1)) KiB"
	[ $((c0 - c1)) -ge $((MIB * 1024 * 9 / 10)) ] || fail "the shared copy stayed after drop_caches"
}

# fsx rewrites the file in one clone while another reads and maps its own the whole time.
t_fsx_two_clones() {
	layer clone base fa
	layer clone base fb
	rm -f /tmp/watch.stop
	py watch $M/fb/f "$(cat /tmp/f.sum)" /tmp/watch.stop >/tmp/watch.out 2>&1 &
	watcher=$!
	mkdir -p /tmp/fsxa
	rc=0
	fsx -f /tests/fsx.toml -N "${SHARE_FSX_OPS:-1000}" -S 9 -P /tmp/fsxa $M/fa/f >/tmp/fsxa/out 2>&1 || rc=$?
	touch /tmp/watch.stop
	wrc=0
	wait $watcher || wrc=$?
	cat /tmp/watch.out
	[ $rc = 0 ] || { tail -40 /tmp/fsxa/out; fail "fsx in fa"; }
	[ $wrc = 0 ] || fail "the reader in fb saw something else"
	check_sum $M/base/f "base's file"
}

# Unmount frees every content inode: the module unloads with no inode left.
t_unload() {
	unbind_debian
	umount $M
	fsck.lcfs -n -v "$DEV"
	rmmod lcfs
	dmesg | tail -5 | grep -q 'unloaded, no inodes left' || fail "unload: $(dmesg | tail -5)"
	modprobe lcfs
}

run_tests setup one_copy mappings exec isolation identity same_layer unshare_without_open other_changes \
	fadvise_and_pressure remount fsx_two_clones unload
