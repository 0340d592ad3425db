#!/bin/busybox sh
# PID 1 of the test guest: mounts the pseudo filesystems, then runs the suite named by lcfs_suite=
# on the kernel command line (or a shell), then powers off.
#
# lcfs_rootfs=1 mounts the Debian root filesystem (second virtio disk) at /debian for tools that
# busybox lacks. lcfs_rootfs=2 makes it the root: the container suites need a real root, since
# runc's pivot_root cannot leave the initramfs. The guest's tools (busybox, lcfs's, the module) and
# the suites are copied over, the pseudo filesystems moved, and this script runs again after
# switch_root with the argument "debian-root", with busybox's applets first in PATH as before.
if [ "$1" = debian-root ]; then
	/lcfs/bin/busybox --install -s /lcfs/bin
	export PATH=/lcfs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	mount -t tmpfs tmpfs /run
	mkdir -p /dev/shm /dev/pts /sys/fs/cgroup
	mount -t tmpfs -o mode=1777 tmpfs /dev/shm
	mount -t devpts devpts /dev/pts
	mount -t cgroup2 cgroup2 /sys/fs/cgroup
	ip link set lo up
	# The kernel's module loader runs /sbin/modprobe, which Debian's minimal system lacks.
	[ -e /sbin/modprobe ] || ln -s /lcfs/bin/busybox /sbin/modprobe
	cd /tests && sh "/tests/$2.sh"
	echo "LCFS-DONE rc=$?"
	sync
	reboot -f
fi
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
elif [ "$rootfs" = 2 ]; then
	mkdir -p /debian
	mount -t ext4 /dev/vdb /debian
	mkdir -p /debian/lcfs/bin /debian/tests /debian/lib/modules
	# Files only: the applet links point at /bin/busybox, which is not there after the switch.
	for f in /bin/*; do [ -L "$f" ] || cp "$f" /debian/lcfs/bin/; done
	cp /init /debian/lcfs/init
	cp -r /tests/. /debian/tests/
	cp -r /lib/modules/. /debian/lib/modules/
	for d in dev proc sys tmp; do mount --move "/$d" "/debian/$d"; done
	exec switch_root /debian /lcfs/bin/busybox sh /lcfs/init debian-root "$suite"
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
