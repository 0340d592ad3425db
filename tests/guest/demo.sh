# `make run`: the main job on a file-backed disk. Formats it, mounts it, writes a tree of files,
# unmounts, checks it with fsck.lcfs, mounts it again and reads everything back.
DEV=/dev/vda
M=/mnt/default
step() { echo; echo "==> $*"; }
echo "LCFS-PLAN: demo"
set -e
step "mkfs.lcfs -L demo $DEV"
mkfs.lcfs -L demo "$DEV"
step "mount -t lcfs $DEV /mnt (the module loads on demand)"
mount -t lcfs "$DEV" /mnt
grep " /mnt " /proc/mounts
step "ls -la /mnt: one directory per layer; mkfs made 'default'"
ls -la /mnt
step "write files into $M"
mkdir -p $M/etc $M/usr/bin $M/var/log
echo "hello from lcfs" >$M/etc/motd
cp /bin/busybox $M/usr/bin/busybox
ln -s busybox $M/usr/bin/sh
ln $M/etc/motd $M/etc/motd.link
dd if=/dev/urandom of=$M/var/log/random bs=64k count=32 2>/dev/null
dd if=/dev/urandom of=$M/var/log/sparse bs=4k count=1 seek=262144 2>/dev/null
mkfifo $M/var/log/fifo
find $M -exec stat -c '%A %h %8s %N' {} +
md5sum $(find $M -type f | sort) | tee /tmp/sums
step "df -h /mnt; stat -f /mnt"
df -h /mnt
stat -f /mnt
step "umount /mnt; fsck.lcfs -n -v $DEV"
umount /mnt
fsck.lcfs -n -v "$DEV"
step "lcfs debug dump $DEV"
lcfs debug dump "$DEV"
step "mount again and read everything back"
mount -t lcfs "$DEV" /mnt
md5sum $(find $M -type f | sort) >/tmp/sums.again
diff /tmp/sums /tmp/sums.again
echo "all $(wc -l </tmp/sums) files read back identical"
cat $M/etc/motd
readlink $M/usr/bin/sh
$M/usr/bin/busybox echo "a binary stored on lcfs runs"
step "umount /mnt; rmmod lcfs"
umount /mnt
rmmod lcfs
dmesg | grep 'lcfs: ' | tail -5
echo
echo "LCFS-RESULT: ok demo"
