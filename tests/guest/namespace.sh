# Namespace suite: directories, names, links, symlinks, device nodes, attributes, rename modes,
# unlinked-but-open files, commits (sync, periodic, unmount) and persistence across remounts,
# each checked against fsck.lcfs.
. /tests/lib.sh

DEV=/dev/vda
M=/mnt/default

echo clear >/sys/kernel/debug/kmemleak

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

t_open_unlinked() {
	echo -n >$M/open
	exec 3<$M/open
	rm $M/open
	[ ! -e $M/open ]
	# Still open: the inode lives on as an orphan until the last close.
	readlink /proc/self/fd/3 | grep -q '/mnt/default/open (deleted)'
	exec 3<&-
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

t_many_entries() {
	mkdir $M/many
	i=0
	while [ $i -lt 1000 ]; do
		: >$M/many/entry-$i
		i=$((i + 1))
	done
	assert_eq "$(ls $M/many | wc -l)" 1000 "entries listed"
	assert_eq "$(ls $M/many | sort -u | wc -l)" 1000 "entries unique"
	# readdir keeps its place while the directory changes under it.
	n=$(find $M/many -mindepth 1 -maxdepth 1 | while read -r f; do
		f=${f##*/}
		case $f in entry-1*) rm -f "$M/many/entry-2${f#entry-1}" ;; esac
		echo "$f"
	done | sort -u | wc -l)
	[ "$n" -ge 500 ] || fail "readdir while deleting listed $n"
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
