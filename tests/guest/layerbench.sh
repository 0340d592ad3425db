# lcfs-needs: debian-rootfs
# lcfs-timeout: 7200
# Layer benchmark (not a test): tests/guest/layerbench.py in the Debian root measures layer
# operations on lcfs, btrfs and overlayfs on the same disk and prints "BENCH ..." lines for
# scripts/layerbench.sh. Settings (LCFS_GUEST_ENV): SIZES, BIG_MB, TREE, DEPTH, REPEAT, CLONES,
# SHARE_MB, PAR_MB, PAR_SECONDS, PAR_ROUNDS, CREATES, LAT_FILES, PARTS.
. /tests/lib.sh

t_layerbench() {
	modprobe lcfs
	cp /tests/layer_abi.py /tests/layerbench.py "$(command -v mkfs.lcfs)" "$(command -v fsck.lcfs)" /tmp/
	# The benchmark mounts at /mnt inside the chroot.
	rc=0
	SIZES="${SIZES:-1000,100000}" BIG_MB="${BIG_MB:-256}" TREE="${TREE:-10000}" DEPTH="${DEPTH:-128}" \
		REPEAT="${REPEAT:-5}" CLONES="${CLONES:-100}" SHARE_MB="${SHARE_MB:-100}" \
		PARTS="${PARTS:-layers,cow,depth,pagecache,parallel,creates,latency}" PAR_MB="${PAR_MB:-128}" \
		PAR_SECONDS="${PAR_SECONDS:-20}" PAR_ROUNDS="${PAR_ROUNDS:-1}" CREATES="${CREATES:-50000}" \
		LAT_FILES="${LAT_FILES:-2000}" chroot /debian python3 /tmp/layerbench.py >/tmp/bench.out 2>/tmp/bench.err ||
		rc=$?
	# The results on the console whatever happened (test output is shown only on failure).
	cat /tmp/bench.out /tmp/bench.err >/dev/console
	assert_eq "$rc" 0 "the benchmark's exit status"
}

run_tests layerbench
