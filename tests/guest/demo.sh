# `make run`: the main job on a file-backed disk. Formats it, loads the module, mounts, shows
# the filesystem, unmounts and unloads.
DEV=/dev/vda
step() { echo; echo "==> $*"; }
set -e
step "mkfs.lcfs -L demo $DEV"
mkfs.lcfs -L demo "$DEV"
step "modprobe lcfs"
modprobe lcfs
grep lcfs /proc/filesystems
step "mount -t lcfs $DEV /mnt"
mount -t lcfs "$DEV" /mnt
grep " /mnt " /proc/mounts
step "ls -la /mnt; stat /mnt"
ls -la /mnt
stat /mnt
step "df -h /mnt; stat -f /mnt"
df -h /mnt
stat -f /mnt
step "lcfs debug super $DEV"
lcfs debug super "$DEV"
step "umount /mnt; rmmod lcfs"
umount /mnt
rmmod lcfs
step "fsck.lcfs -n -v $DEV"
fsck.lcfs -n -v "$DEV"
step "lcfs debug dump --items $DEV"
lcfs debug dump --items "$DEV"
dmesg | grep 'lcfs: ' | tail -5
echo
echo "LCFS-RESULT: ok demo"
