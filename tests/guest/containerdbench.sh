# lcfs-needs: debian-root
# lcfs-needs: churn
# lcfs-timeout: 14400
# containerd benchmark (not a test): tests/guest/containerdbench.py in the guest booted into the
# Debian root compares the lcfs snapshotter with containerd's overlayfs, native and btrfs
# snapshotters, each on the same disk in turn, and prints "BENCH ..." lines for
# scripts/containerdbench.sh. Settings (LCFS_GUEST_ENV): CHURN_N, CHURN_COMMIT_N, CHURN_RUN_N,
# IMPORT_REPEAT, CTR_NOOP_N, PARALLEL, SNAPSHOTTERS.
. /tests/lib.sh

t_containerdbench() {
	rc=0
	# Results and progress straight to the console as they are measured: a run cut short by the
	# timeout keeps what it measured.
	python3 /tests/containerdbench.py >/dev/console 2>&1 || rc=$?
	assert_eq "$rc" 0 "the benchmark's exit status"
}

run_tests containerdbench
