# lcfs-needs: kmemleak
# Foundation suite: module loading, mount/umount, empty root, statfs, mkfs in the guest,
# damaged superblocks, unload without leaks.
. /tests/lib.sh

DEV=/dev/vda

# Marks every allocation made so far as already reported, so the final scan sees only new leaks.
echo clear >/sys/kernel/debug/kmemleak

t_mkfs_in_guest() {
	mkfs.lcfs -L guest "$DEV"
	lcfs debug super "$DEV" | grep -q 'label *guest'
	# A second mkfs without -f must refuse: the device holds an LCFS signature now.
	if mkfs.lcfs -q "$DEV" 2>/tmp/err; then fail "mkfs overwrote without -f"; fi
	grep -q 'existing signature (lcfs)' /tmp/err
	# The fresh filesystem is consistent, with its first read-write layer.
	fsck.lcfs -n "$DEV"
	lcfs debug dump "$DEV" | grep -q '1 "default" parent 0 rw'
}

t_mount_autoloads_module() {
	! grep -q '^lcfs ' /proc/modules || fail "lcfs loaded before mount"
	mount -t lcfs "$DEV" /mnt
	grep -q '^lcfs ' /proc/modules
	grep -q 'lcfs$' /proc/filesystems
	grep -q "^$DEV /mnt lcfs rw" /proc/mounts
}

t_layer_root() {
	ls -la /mnt
	# The mount root lists the layers; mkfs made one, "default", as an empty directory.
	assert_eq "$(ls -a /mnt | tr '\n' ' ')" ". .. default " "ls -a"
	assert_eq "$(stat -c '%F %a %u %g %h %i' /mnt)" "directory 755 0 0 2 1" "root attributes"
	# Inode numbers are layer << 40 | inode: layer 1, root inode 1.
	assert_eq "$(stat -c '%F %h %i' /mnt/default)" "directory 2 1099511627777" "layer root"
	assert_eq "$(ls -A /mnt/default | wc -l)" 0 "entries in the layer root"
	[ ! -e /mnt/missing ] || fail "missing name exists"
	if mkdir /mnt/newlayer 2>/tmp/err; then fail "mkdir made a layer"; fi
	grep -q 'not permitted' /tmp/err || fail "expected EPERM, got $(cat /tmp/err)"
	long=$(printf '%0256d' 0)
	if stat "/mnt/$long" 2>/tmp/err; then fail "256-byte name found"; fi
	grep -q 'too long' /tmp/err || fail "expected ENAMETOOLONG, got $(cat /tmp/err)"
}

t_statfs() {
	stat -f /mnt
	# 256 MiB scratch disk: 65536 blocks. After mkfs 65530 are free (two superblock copies, two
	# map nodes of a level-1 map, the layer tree, the first layer's tree); reading directories
	# since then updated access times, whose copy-on-write may hold a few more. Available
	# excludes the 2% metadata reserve (1310 blocks) and the metadata a write step keeps in
	# hand (16 tree updates of 36 blocks each with a level-1 map).
	assert_eq "$(stat -f -c '%t %S %b %l' /mnt)" "4c434653 4096 65536 255" "statfs"
	free=$(stat -f -c %f /mnt)
	[ "$free" -le 65530 ] && [ "$free" -ge 65500 ] || fail "free blocks $free"
	assert_eq "$(stat -f -c %a /mnt)" "$((free - 1310 - 16 * 36))" "available blocks"
	df -k /mnt | grep -q '262144'
}

t_fs_info_ioctl() {
	lcfs info /mnt
	lcfs info /mnt | grep -q '^label *guest$'
	# Committed first: a periodic commit between the two reads would free the pinned blocks of
	# the earlier tests' changes and move the count.
	sync
	lcfs info --json /mnt | grep -Eq "\"free_blocks\": $(stat -f -c %f /mnt)(,|\$)" ||
		fail "free blocks differ: $(lcfs info --json /mnt | grep free_blocks) against $(stat -f -c %f /mnt)"
	uuid=$(lcfs debug super "$DEV" | awk '/uuid/ {print $2; exit}')
	lcfs info /mnt | grep -q "^uuid *$uuid$" || fail "uuid differs from the superblock ($uuid)"
	if lcfs info /tmp 2>/tmp/err; then fail "ioctl worked on tmpfs"; fi
	grep -q 'not on an LCFS filesystem' /tmp/err
}

t_umount() {
	umount /mnt
	! grep -q ' /mnt ' /proc/mounts || fail "still mounted"
}

t_mount_options() {
	if mount -t lcfs -o no_such_option "$DEV" /mnt 2>/tmp/err; then umount /mnt; fail "bogus option accepted"; fi
	cat /tmp/err
	mount -t lcfs -o ro "$DEV" /mnt
	grep -q "^$DEV /mnt lcfs ro" /proc/mounts
	umount /mnt
}

t_busy_device_refused_by_mkfs() {
	mount -t lcfs "$DEV" /mnt
	if mkfs.lcfs -f -q "$DEV" 2>/tmp/err; then umount /mnt; fail "mkfs formatted a mounted device"; fi
	cat /tmp/err
	umount /mnt
	grep -q 'busy' /tmp/err || fail "mkfs failed for another reason"
}

t_mount_cycles() {
	i=0
	while [ $i -lt 20 ]; do
		mount -t lcfs "$DEV" /mnt
		ls -la /mnt >/dev/null
		stat /mnt >/dev/null
		umount /mnt
		i=$((i + 1))
	done
}

# Damaged images live on loop devices backed by tmpfs files.
IMG=/tmp/img
new_image() {
	rm -f "$IMG"
	mkfs.lcfs -q -s "${1:-8M}" "$IMG"
	LOOP=$(losetup -f)
	losetup "$LOOP" "$IMG"
}
drop_image() {
	losetup -d "$LOOP"
}

t_bad_magic() {
	new_image
	poke "$IMG" 0 000
	poke "$IMG" 4096 000
	expect_mount_error "$LOOP" "Invalid argument" "bad magic"
	drop_image
}

t_bad_checksum() {
	new_image
	# A byte inside the label of both copies.
	poke "$IMG" 140 101
	poke "$IMG" 4236 101
	expect_mount_error "$LOOP" "Structure needs cleaning" "checksum mismatch"
	drop_image
}

t_unknown_version() {
	new_image
	poke "$IMG" 12 005
	poke "$IMG" 4108 005
	expect_mount_error "$LOOP" "Invalid argument" "unknown format version 5"
	drop_image
}

# Features this code does not know, set in both superblock copies with their checksums by
# `lcfs debug set-super`: a read-only-compatible one allows only a read-only mount (as ext4),
# a remount read-write is refused, and fsck reports it (exit 4); a compatible one is ignored by
# the kernel and noted by fsck.
t_unknown_features() {
	new_image
	lcfs debug set-super "$IMG" ro_compat 0x4000000000000000
	expect_mount_error "$LOOP" "Invalid argument" "unknown read-only-compatible features 0x4000000000000000"
	mount -t lcfs -o ro "$LOOP" /mnt || fail "a read-only mount with an unknown ro_compat feature"
	ls /mnt/default >/dev/null
	if mount -o remount,rw /mnt 2>/tmp/err; then umount /mnt; fail "remounted read-write"; fi
	dmesg | tail -3 | grep -q "couldn't remount read-write" || fail "no kernel message for the remount"
	umount /mnt
	rc=0
	fsck.lcfs -n "$IMG" >/tmp/fsck.out 2>&1 || rc=$?
	cat /tmp/fsck.out
	assert_eq "$rc" 4 "fsck's exit status for an unknown ro_compat feature"
	grep -q "unknown read-only-compatible features 0x4000000000000000" /tmp/fsck.out ||
		fail "fsck does not name the feature"
	lcfs debug set-super "$IMG" ro_compat 0
	lcfs debug set-super "$IMG" compat 0x10
	mount -t lcfs "$LOOP" /mnt || fail "a read-write mount with an unknown compatible feature"
	echo kept >/mnt/default/file
	umount /mnt
	fsck.lcfs -n "$IMG" >/tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "fsck after the rw mount"; }
	cat /tmp/fsck.out
	grep -q "unknown compatible features 0x10" /tmp/fsck.out || fail "fsck does not note the compat feature"
	lcfs debug super "$IMG" | grep -q "compat *16" || { lcfs debug super "$IMG"; fail "the commit dropped the compat feature"; }
	drop_image
}

t_device_too_small() {
	new_image 8M
	losetup -d "$LOOP"
	# The filesystem says 2048 blocks; cut the device to 1 MiB (256 blocks).
	truncate -s 1M "$IMG"
	losetup "$LOOP" "$IMG"
	expect_mount_error "$LOOP" "Structure needs cleaning" "device too small"
	drop_image
}

# mkfs with a size on a block device (mke2fs's trailing fs-size): the filesystem takes the first
# 64 MiB of the 256 MiB disk, and filling it leaves the bytes past it alone.
t_sized_on_block_device() {
	umount /mnt 2>/dev/null || :
	printf 'past-the-filesystem' | dd of="$DEV" bs=1M seek=100 conv=notrunc 2>/dev/null
	if mkfs.lcfs -q -f "$DEV" 1G 2>/tmp/err; then fail "mkfs made 1 GiB on a 256 MiB disk"; fi
	cat /tmp/err
	grep -q 'larger than the device' /tmp/err
	mkfs.lcfs -f "$DEV" 65536 | tee /tmp/out
	grep -q '16384 blocks' /tmp/out
	lcfs debug super "$DEV" | grep -q '^  total_blocks  16384$' || { lcfs debug super "$DEV"; fail "superblock size"; }
	mount -t lcfs "$DEV" /mnt
	assert_eq "$(stat -f -c '%b %S' /mnt)" "16384 4096" "statfs size"
	if dd if=/dev/zero of=/mnt/default/fill bs=1M 2>/tmp/err; then fail "filled 256 MiB"; fi
	grep -q 'No space left' /tmp/err
	size=$(stat -c %s /mnt/default/fill)
	echo "filled $size bytes"
	[ "$size" -le $((64 << 20)) ] || fail "a 64 MiB filesystem took $size bytes"
	umount /mnt
	fsck.lcfs -n "$DEV"
	assert_eq "$(dd if="$DEV" bs=1M skip=100 count=1 2>/dev/null | head -c 19)" past-the-filesystem \
		"bytes past the filesystem"
}

# raw_image SOURCE BLOCKSIZE COUNT: a loop device over bytes copied from SOURCE.
raw_image() {
	rm -f "$IMG"
	dd if="$1" of="$IMG" bs="$2" count="$3" 2>/dev/null
	LOOP=$(losetup -f)
	losetup "$LOOP" "$IMG"
}

t_tiny_device() {
	raw_image /dev/zero 4096 1
	expect_mount_error "$LOOP" "Invalid argument" "device too small"
	drop_image
}

t_garbage() {
	raw_image /dev/urandom 1M 4
	expect_mount_error "$LOOP" "Invalid argument" "bad magic"
	drop_image
}

t_zeroed() {
	raw_image /dev/zero 1M 4
	expect_mount_error "$LOOP" "Invalid argument" "bad magic"
	drop_image
}

t_one_copy_damaged() {
	new_image
	# mkfs commits twice: copy 0 (generation 2) is current, copy 1 (generation 1) describes the
	# same state. Damage copy 0 and mount must fall back to copy 1.
	poke "$IMG" 140 001
	mount -t lcfs "$LOOP" /mnt
	dmesg | grep "lcfs: [a-z]*[0-9]*: " | tail -2
	dmesg | grep "lcfs: [a-z]*[0-9]*: " | tail -2 | grep -q 'superblock copy 0 is invalid'
	stat /mnt >/dev/null
	umount /mnt
	drop_image
}

t_damaged_map() {
	new_image
	# Block 2 is the root of the reference-count map.
	poke "$IMG" $((2 * 4096 + 100)) 377
	expect_mount_error "$LOOP" "Structure needs cleaning" "reference-count map: checksum mismatch"
	drop_image
	if fsck.lcfs -n "$IMG" >/tmp/fsck.out; then fail "fsck passed a damaged map"; else rc=$?; fi
	cat /tmp/fsck.out
	assert_eq "$rc" 4 "fsck exit status"
}

t_damaged_layer_tree() {
	new_image
	root=$(lcfs debug super "$IMG" | awk '/layer_root/ {print $2; exit}')
	[ "$root" -gt 2 ] || fail "no layer tree root ($root)"
	poke "$IMG" $((root * 4096 + 70)) 377
	expect_mount_error "$LOOP" "Structure needs cleaning" "layer tree"
	drop_image
	if fsck.lcfs -n "$IMG" >/tmp/fsck.out; then fail "fsck passed a damaged layer tree"; else rc=$?; fi
	cat /tmp/fsck.out
	assert_eq "$rc" 4 "fsck exit status"
}

t_fsck_operational_error() {
	dd if=/dev/zero of=/tmp/zero bs=1M count=2 2>/dev/null
	if fsck.lcfs -n /tmp/zero 2>/tmp/err; then fail "fsck accepted zeroes"; else rc=$?; fi
	assert_eq "$rc" 8 "fsck exit status"
	grep -q 'not an LCFS filesystem' /tmp/err
}

t_rmmod_no_leak() {
	modprobe -r lcfs
	! grep -q '^lcfs ' /proc/modules || fail "module still loaded"
	dmesg | grep 'lcfs: unloaded' | tail -1
	dmesg | grep 'lcfs: unloaded' | tail -1 | grep -q 'no inodes left'
	! grep -q '^lcfs_inode ' /proc/slabinfo 2>/dev/null || fail "inode cache survived rmmod"
	# kmemleak reports only objects older than 5 s, after two scans.
	sleep 6
	echo scan >/sys/kernel/debug/kmemleak
	echo scan >/sys/kernel/debug/kmemleak
	leaks=$(cat /sys/kernel/debug/kmemleak)
	[ -z "$leaks" ] || { echo "$leaks" | head -40; fail "kmemleak found leaks"; }
}

t_modprobe_explicit() {
	modprobe lcfs
	grep -q '^lcfs ' /proc/modules
	modinfo lcfs 2>/dev/null | grep -q 'alias: *fs-lcfs' || [ -n "$(grep fs-lcfs /lib/modules/*/modules.alias)" ]
	rmmod lcfs
}

run_tests \
	mkfs_in_guest mount_autoloads_module layer_root statfs fs_info_ioctl umount mount_options \
	busy_device_refused_by_mkfs mount_cycles bad_magic bad_checksum unknown_version unknown_features \
	device_too_small tiny_device garbage zeroed one_copy_damaged damaged_map damaged_layer_tree \
	sized_on_block_device fsck_operational_error rmmod_no_leak modprobe_explicit
