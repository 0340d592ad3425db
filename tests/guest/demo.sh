# lcfs-needs: debian-root
# `make run`: the main job on a file-backed disk. Formats it, mounts it, writes a tree of files,
# unmounts, checks it with fsck.lcfs, mounts it again and reads everything back; then uses layers
# as a container runtime would: an image layer frozen, two containers cloned from it, their
# diffs, a snapshot and a removal, the usage, fsck. Last, containerd runs a container whose
# snapshots are layers of the same filesystem (containerd-lcfs-grpc); the guest boots into the
# Debian root filesystem for containerd and runc, with busybox's tools first in PATH.
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
cp /lcfs/bin/busybox $M/usr/bin/busybox
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
step "layers: freeze 'default' as an image, clone two containers from it"
lcfs layer rename default image -m /mnt
lcfs layer freeze image -m /mnt
lcfs layer clone image container-a -m /mnt
lcfs layer clone image container-b -m /mnt
ls -la /mnt
step "each container writes; the image does not change"
echo "written by container a" >/mnt/container-a/etc/motd
rm /mnt/container-a/var/log/fifo
mkdir /mnt/container-a/app
cp /mnt/container-a/usr/bin/busybox /mnt/container-a/app/tool
printf 'B' | dd of=/mnt/container-b/var/log/random bs=1 seek=1000 conv=notrunc 2>/dev/null
cat /mnt/image/etc/motd /mnt/container-a/etc/motd /mnt/container-b/etc/motd
step "lcfs layer diff: what each container changed"
lcfs layer diff container-a -m /mnt
lcfs layer diff container-b -m /mnt
step "snapshot container-a (it goes on running), remove container-b"
lcfs layer snapshot container-a container-a-snap -m /mnt
echo "after the snapshot" >>/mnt/container-a/etc/motd
cat /mnt/container-a-snap/etc/motd
lcfs layer remove container-b -m /mnt
step "lcfs layer list; lcfs df"
lcfs layer list -m /mnt
lcfs df /mnt
step "umount /mnt; fsck.lcfs -n $DEV"
umount /mnt
fsck.lcfs -n "$DEV"
step "containerd: containerd-lcfs-grpc serves this filesystem's layers as containerd snapshots"
containerd-lcfs-grpc --device "$DEV" >/tmp/lcfs-grpc.log 2>&1 &
grpc=$!
while [ ! -S /run/containerd-lcfs/containerd-lcfs-grpc.sock ]; do sleep 0.2; done
mkdir -p /etc/containerd
cat >/etc/containerd/config.toml <<'END'
version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[proxy_plugins]
  [proxy_plugins.lcfs]
    type = "snapshot"
    address = "/run/containerd-lcfs/containerd-lcfs-grpc.sock"
END
cat /etc/containerd/config.toml
containerd >/tmp/containerd.log 2>&1 &
ctrd=$!
while ! ctr version >/dev/null 2>&1; do sleep 0.2; done
ctr plugins ls | grep -E 'TYPE|lcfs'
step "ctr image import --snapshotter lcfs: a busybox image built offline, unpacked into a layer"
ctr image import --snapshotter lcfs /images/busybox.tar
ctr snapshots --snapshotter lcfs ls
step "ctr run --rm --snapshotter lcfs: the container's root is a clone of the image's layer"
ctr run --rm --snapshotter lcfs localhost/lcfs-test/busybox:1 demo sh -c \
	'echo "hello from a container on lcfs"; awk "\$5 == \"/\"" /proc/self/mountinfo; echo x >/written; ls /'
step "the filesystem's layers: the demo's own beside containerd's and its metadata layer (the container's goes when containerd's collector runs)"
lcfs layer list -m /var/lib/containerd-lcfs/mnt
step "stop containerd and the snapshotter; umount; fsck.lcfs -n $DEV; rmmod lcfs"
kill $ctrd $grpc
wait $ctrd $grpc || :
umount /var/lib/containerd-lcfs/mnt
fsck.lcfs -n "$DEV"
rmmod lcfs
dmesg | grep 'lcfs: ' | tail -5
echo
echo "LCFS-RESULT: ok demo"
