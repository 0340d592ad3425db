# lcfs-needs: debian-rootfs
# Namespace suite: directories, names, links, symlinks, device nodes, attributes, rename modes,
# unlinked-but-open files, commits (sync, periodic, unmount) and persistence across remounts,
# each checked against fsck.lcfs.
. /tests/lib.sh

DEV=/dev/vda
M=/mnt/default

# The last committed generation of the mounted filesystem.
generation() {
	lcfs info /mnt | awk '$1 == "generation" {print $2; exit}'
}

t_setup() {
	mkfs.lcfs -q "$DEV"
	mount -t lcfs "$DEV" /mnt
	[ -d $M ]
}

t_create_and_stat() {
	touch $M/file
	mkdir $M/dir
	mkdir -p $M/dir/a/b/c
	assert_eq "$(stat -c '%F %h %s' $M/file)" "regular empty file 1 0" "file"
	assert_eq "$(stat -c '%F %h' $M/dir)" "directory 3" "dir with one subdirectory"
	assert_eq "$(stat -c '%h' $M)" "3" "layer root links"
	assert_eq "$(ls $M | tr '\n' ' ')" "dir file " "ls"
	ls -laR $M
	# New inodes belong to layer 1: inode numbers above 1 << 40.
	ino=$(stat -c %i $M/file)
	[ "$ino" -gt 1099511627777 ] || fail "inode number $ino"
	if mkdir $M/dir 2>/tmp/err; then fail "mkdir over an existing name"; fi
	grep -q 'exists' /tmp/err
}

t_owner_and_mode() {
	umask 022
	touch $M/m1
	assert_eq "$(stat -c '%a %u %g' $M/m1)" "644 0 0" "default mode"
	chmod 4751 $M/m1
	chown 1234:5678 $M/m1
	assert_eq "$(stat -c '%a %u %g' $M/m1)" "751 1234 5678" "chmod + chown clears set-user-ID"
	chmod 2775 $M/dir
	chown :77 $M/dir
	mkdir $M/dir/sgid
	touch $M/dir/sgid-file
	assert_eq "$(stat -c '%a %g' $M/dir/sgid)" "2755 77" "set-group-ID directory inherited"
	assert_eq "$(stat -c '%g' $M/dir/sgid-file)" "77" "group inherited"
	touch -d '2001-02-03 04:05:06' $M/m1
	assert_eq "$(stat -c '%Y' $M/m1)" "981173106" "mtime set"
}

t_links() {
	echo -n >$M/l1
	ln $M/l1 $M/l2
	ln $M/l1 $M/dir/l3
	assert_eq "$(stat -c '%h' $M/l1)" "3" "link count"
	assert_eq "$(stat -c %i $M/l1)" "$(stat -c %i $M/dir/l3)" "same inode"
	rm $M/l2
	assert_eq "$(stat -c '%h' $M/l1)" "2" "link count after unlink"
	if ln $M/dir $M/dirlink 2>/dev/null; then fail "hard link to a directory"; fi
}

t_symlinks() {
	ln -s file $M/sym
	ln -s /some/absolute/target $M/abs
	assert_eq "$(readlink $M/sym)" "file" "readlink"
	assert_eq "$(readlink $M/abs)" "/some/absolute/target" "readlink absolute"
	assert_eq "$(stat -L -c %F $M/sym)" "regular empty file" "follow"
	assert_eq "$(stat -c '%F %s' $M/abs)" "symbolic link 21" "symlink size"
	t=$(printf '%01000d' 0)
	ln -s "$t" $M/longsym
	assert_eq "$(readlink $M/longsym)" "$t" "1000-byte target"
	# Targets up to PATH_MAX - 1 bytes (several inline items); one more is too long.
	t=$(printf '%04095d' 7)
	ln -s "$t" $M/pathmax
	assert_eq "$(readlink $M/pathmax)" "$t" "4095-byte target"
	assert_eq "$(stat -c %s $M/pathmax)" "4095" "4095-byte target size"
	if ln -s "${t}8" $M/toolong 2>/tmp/err; then fail "4096-byte target accepted"; fi
	cat /tmp/err
	grep -q 'File name too long' /tmp/err
	[ ! -e $M/toolong ] && [ ! -L $M/toolong ]
}

t_device_nodes() {
	mknod $M/chr c 1 3
	mknod $M/blk b 8 1
	mkfifo $M/fifo
	assert_eq "$(stat -c '%F %t %T' $M/chr)" "character special file 1 3" "char device"
	assert_eq "$(stat -c '%F %t %T' $M/blk)" "block special file 8 1" "block device"
	assert_eq "$(stat -c '%F' $M/fifo)" "fifo" "fifo"
	# The char node is /dev/null's: writing to it works through the device driver.
	echo hello >$M/chr
	(echo through-fifo >$M/fifo &)
	assert_eq "$(cat $M/fifo)" "through-fifo" "fifo data"
}

t_rename() {
	touch $M/r1
	mv $M/r1 $M/dir/r2
	[ ! -e $M/r1 ] || fail "r1 still there after the rename"
	[ -e $M/dir/r2 ] || fail "dir/r2 missing after the rename"
	# Replace an existing file.
	touch $M/r3
	ino=$(stat -c %i $M/r3)
	mv $M/r3 $M/dir/r2
	assert_eq "$(stat -c %i $M/dir/r2)" "$ino" "replaced"
	# Directories move with their link counts.
	mkdir $M/mv1
	before=$(stat -c %h $M/dir)
	mv $M/mv1 $M/dir/
	assert_eq "$(stat -c %h $M/dir)" "$((before + 1))" "new parent links"
	# A directory cannot move into itself.
	if mv $M/dir $M/dir/a/ 2>/dev/null; then fail "moved a directory into itself"; fi
	# Non-empty directory as target.
	mkdir $M/full $M/empty
	touch $M/full/x
	if mv -T $M/empty $M/full 2>/tmp/err; then fail "replaced a non-empty directory"; fi
	rmdir $M/empty
}

t_rmdir_unlink() {
	if rmdir $M/dir 2>/tmp/err; then fail "removed a non-empty directory"; fi
	grep -q 'not empty' /tmp/err
	mkdir $M/gone
	rmdir $M/gone
	[ ! -e $M/gone ]
	if rm $M/missing 2>/dev/null; then fail "removed a missing name"; fi
	if rmdir $M/file 2>/dev/null; then fail "rmdir of a file"; fi
}

free_blocks() { sync; stat -f -c %f /mnt; }

t_open_unlinked() {
	dd if=/dev/urandom of=/tmp/open bs=64k count=16 2>/dev/null
	cp /tmp/open $M/open
	written=$(free_blocks)
	exec 3<$M/open
	rm $M/open
	[ ! -e $M/open ]
	# Still open: the inode lives on as an orphan until the last close, data and blocks included
	# (a commit in between changes nothing).
	readlink /proc/self/fd/3 | grep -q '/mnt/default/open (deleted)'
	unlinked=$(free_blocks)
	[ "$unlinked" -le $((written + 8)) ] || fail "unlinking an open file freed blocks ($written, then $unlinked)"
	cmp /tmp/open /proc/self/fd/3
	exec 3<&-
	# The last close deletes it: its 256 data blocks come back.
	closed=$(free_blocks)
	[ "$closed" -ge $((unlinked + 256)) ] || fail "closing freed $((closed - unlinked)) blocks, not 256"
}

t_sync_commits() {
	before=$(generation)
	touch $M/sync1
	sync
	after=$(generation)
	[ "$after" -gt "$before" ] || fail "sync did not commit ($before -> $after)"
}

t_periodic_commit() {
	umount /mnt
	mount -t lcfs -o commit=1 "$DEV" /mnt
	grep -q "^$DEV /mnt lcfs rw" /proc/mounts
	before=$(generation)
	touch $M/periodic
	sleep 3
	after=$(generation)
	[ "$after" -gt "$before" ] || fail "no periodic commit ($before -> $after)"
	if mount -o remount,commit=0 /mnt 2>/dev/null; then fail "commit=0 accepted"; fi
	mount -o remount,commit=7 /mnt
}

t_fsck_after_unmount() {
	ls -laR $M | sed 's/ [A-Z][a-z][a-z] .*:[0-9][0-9] / /' >/tmp/before.txt
	find $M | sort >/tmp/before.find
	stat -c '%n %i %a %u %g %h %s %Y' $(find $M | sort) >/tmp/before.stat
	umount /mnt
	fsck.lcfs -n -v "$DEV"
}

t_remount_persistence() {
	mount -t lcfs "$DEV" /mnt
	find $M | sort >/tmp/after.find
	stat -c '%n %i %a %u %g %h %s %Y' $(find $M | sort) >/tmp/after.stat
	diff /tmp/before.find /tmp/after.find
	diff /tmp/before.stat /tmp/after.stat
	assert_eq "$(readlink $M/sym)" "file" "symlink survives"
	assert_eq "$(readlink $M/pathmax)" "$(printf '%04095d' 7)" "4095-byte target survives"
}

t_layer_option() {
	umount /mnt
	mount -t lcfs -o layer=default "$DEV" /mnt
	[ -f /mnt/file ] || fail "layer root not mounted as root"
	assert_eq "$(stat -c %i /mnt)" "1099511627777" "root inode of layer 1"
	umount /mnt
	if mount -t lcfs -o layer=nosuch "$DEV" /mnt 2>/tmp/err; then umount /mnt; fail "mounted a missing layer"; fi
	dmesg | tail -3 | grep -q 'no layer named "nosuch"'
	mount -t lcfs "$DEV" /mnt
}

t_read_only_mount() {
	umount /mnt
	mount -t lcfs -o ro "$DEV" /mnt
	if touch $M/ro 2>/tmp/err; then fail "created on a read-only mount"; fi
	grep -q 'Read-only' /tmp/err
	mount -o remount,rw /mnt
	touch $M/rw-again
	umount /mnt
	fsck.lcfs -n "$DEV"
	mount -t lcfs "$DEV" /mnt
}

# A reader of the directory that changes it as it goes: on reading e-N-... for an even N it
# unlinks e-(N+1)-..., and for every tenth even N it creates n-N-...; it prints what it read.
# Python's scandir reads with getdents in 32 KiB batches, about 140 of these names each.
READ_AND_CHANGE='
import os, sys
d, pad = sys.argv[1], sys.argv[2]
names = []
with os.scandir(d) as it:
    for e in it:
        names.append(e.name)
        kind, n = e.name.split("-")[:2]
        n = int(n)
        if kind == "e" and n % 2 == 0:
            try:
                os.unlink(f"{d}/e-{n + 1}-{pad}")
            except FileNotFoundError:
                pass
            if n % 20 == 0:
                open(f"{d}/n-{n}-{pad}", "x").close()
print("\n".join(names))
'

t_many_entries() {
	# 3000 names of 208 bytes: a directory read takes about 20 getdents calls.
	pad=$(printf '%0200d' 0)
	mkdir $M/many
	i=0
	while [ $i -lt 3000 ]; do
		: >$M/many/e-$i-$pad
		i=$((i + 1))
	done
	ls $M/many >/tmp/listed
	assert_eq "$(wc -l </tmp/listed)" 3000 "entries listed"
	assert_eq "$(sort /tmp/listed | uniq -d | wc -l)" 0 "names listed twice"
	i=0
	while [ $i -lt 3000 ]; do echo e-$i-$pad; i=$((i + 1)); done | sort >/tmp/want
	sort /tmp/listed | cmp - /tmp/want
	# readdir keeps its place while the directory changes under it: every name that stays is
	# listed exactly once, a removed or added one at most once, nothing else.
	mount --bind /mnt /debian/mnt
	rc=0
	chroot /debian python3 -c "$READ_AND_CHANGE" $M/many "$pad" >/tmp/read || rc=$?
	umount /debian/mnt
	assert_eq "$rc" 0 "reader's exit status"
	assert_eq "$(sort /tmp/read | uniq -d | wc -l)" 0 "names read twice"
	assert_eq "$(grep -c "^e-[0-9]*[02468]-$pad\$" /tmp/read)" 1500 "names that stayed"
	grep -v "^[en]-[0-9]*-$pad\$" /tmp/read && fail "names never created"
	odd=$(grep -c "^e-[0-9]*[13579]-$pad\$" /tmp/read || true)
	new=$(grep -c "^n-[0-9]*-$pad\$" /tmp/read || true)
	echo "read $odd of 1500 removed names, $new of 150 added ones"
	# Some removed names must have gone before the reader reached them, or nothing was tested.
	[ "$odd" -lt 1400 ] || fail "the reader saw $odd of 1500 names removed under it"
	# What is left: the even names and the added ones.
	assert_eq "$(ls $M/many | wc -l)" 1650 "entries after the changes"
	rm -rf $M/many
	[ ! -e $M/many ]
}

t_final_fsck() {
	umount /mnt
	fsck.lcfs -n -v "$DEV"
	dmesg | grep -i 'lcfs' | tail -5
}

run_tests \
	setup create_and_stat owner_and_mode links symlinks device_nodes rename rmdir_unlink \
	open_unlinked sync_commits periodic_commit fsck_after_unmount remount_persistence layer_option \
	read_only_mount many_entries final_fsck
