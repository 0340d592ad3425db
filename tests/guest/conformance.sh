# lcfs-needs: conformance
# lcfs-timeout: 2400
# containerd's own snapshotter test suite (containerd 1.6's snapshots/testsuite, built on the host
# by scripts/build-conformance.sh from Debian's sources) against containerd-lcfs-grpc through
# containerd's proxy client, every case on a fresh daemon with a fresh file-backed LCFS; then the
# same cases against containerd's overlayfs snapshotter in-process, as the reference. Each case is
# one result, containerd-conformance/lcfs/NAME and containerd-conformance/overlay/NAME
# (tests/guest/gotest-results.sh).
. /tests/lib.sh

modprobe lcfs
# The cases' directories and image files: on tmpfs, sparse.
export TMPDIR=/tmp
sh /tests/gotest-results.sh -k /tests/containerd-conformance.skips containerd-conformance \
	lcfs-snapshot-conformance -test.v -test.parallel 4 -test.timeout 35m || :
