# lcfs-needs: debian-rootfs
# The Debian userland path of the harness: tools that later suites use (fio, stress-ng, mkfs.ext4)
# run in the guest from the cached Debian root filesystem.
. /tests/lib.sh

t_debian_tools_run() {
	chroot /debian fio --version
	chroot /debian stress-ng --version
	chroot /debian mkfs.ext4 -V
}

t_fio_smoke() {
	chroot /debian fio --name=smoke --directory=/tmp --size=16M --rw=randrw --bs=4k \
		--ioengine=psync --runtime=2 --time_based --output-format=terse >/tmp/fio.out
	cat /tmp/fio.out
	# terse v3: field 3 is the job name, field 5 the error, field 6 the KiB read.
	line=$(grep '^3;' /tmp/fio.out)
	assert_eq "$(echo "$line" | cut -d';' -f3)" smoke "fio job"
	assert_eq "$(echo "$line" | cut -d';' -f5)" 0 "fio error"
	[ "$(echo "$line" | cut -d';' -f6)" -gt 0 ] || fail "fio read nothing"
	! grep -q 'fio:' /tmp/fio.out || fail "fio reported problems"
}

t_stress_ng_smoke() {
	chroot /debian stress-ng --cpu 1 --timeout 2s --metrics-brief
}

t_ext4_baseline_available() {
	# Later benchmarks compare LCFS with ext4 on the same virtual disk.
	chroot /debian mkfs.ext4 -q -F /dev/vda
	mount -t ext4 /dev/vda /mnt
	echo hello >/mnt/f
	assert_eq "$(cat /mnt/f)" hello "ext4 round trip"
	umount /mnt
}

run_tests \
	debian_tools_run fio_smoke stress_ng_smoke ext4_baseline_available
