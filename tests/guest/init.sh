#!/bin/busybox sh
# PID 1 of the test guest: mounts the pseudo filesystems, then runs the suite named by lcfs_suite=
# on the kernel command line (or a shell), then powers off.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
hostname lcfs-guest

suite=shell rootfs=0
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	lcfs_suite=*) suite=${arg#lcfs_suite=} ;;
	lcfs_rootfs=*) rootfs=${arg#lcfs_rootfs=} ;;
	esac
done

# The Debian root filesystem (second virtio disk) provides tools busybox lacks; tests run them
# with `chroot /debian CMD`, which sees the guest's /dev, /proc, /sys, /tmp and /mnt.
if [ "$rootfs" = 1 ]; then
	mkdir -p /debian
	mount -t ext4 /dev/vdb /debian
	for d in dev proc sys tmp mnt; do mount --bind "/$d" "/debian/$d"; done
fi

if [ "$suite" = shell ]; then
	echo "LCFS guest: lcfs.ko is installed (modprobe lcfs); scratch disk /dev/vda; mkfs.lcfs, lcfs in PATH"
	setsid cttyhack sh -l
else
	cd /tests && sh "/tests/$suite.sh"
	echo "LCFS-DONE rc=$?"
fi
sync
reboot -f
