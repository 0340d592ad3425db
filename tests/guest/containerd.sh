# lcfs-needs: debian-root
# lcfs-needs: conformance
# lcfs-timeout: 2400
# containerd suite: Debian's containerd and runc run real containers whose snapshots are LCFS
# layers, served by containerd-lcfs-grpc as a proxy plugin. The guest boots into the Debian root
# filesystem (runc needs a real root); the images are OCI archives built on the host from Debian
# packages and busybox (scripts/mkrootfs.sh) and imported with `ctr image import`.
#
# Meanwhile, in the same boot, containerd's own snapshotter test suite (containerd 1.6's
# snapshots/testsuite, built on the host by scripts/build-go.sh conformance from Debian's sources)
# runs against containerd-lcfs-grpc through containerd's proxy client, every case on a fresh
# daemon with a fresh file-backed LCFS, and against containerd's overlayfs snapshotter
# in-process as the reference, in a second process; one result per case,
# containerd-conformance/lcfs/NAME and containerd-reference/overlay/NAME
# (tests/guest/gotest-results.sh). It shares nothing with the tests above but the kernel.
#
# CONFORMANCE_CASES (guest environment): the lcfs cases, a Go -test.run pattern for the case
# names; make test's "^[^1]" leaves out 128LayersMount (6.5 minutes under TCG, beside the tests
# above; the layers suite's clone_chain covers 128 layers deep in the kernel), make soak runs them
# all ("."). CONFORMANCE_REFERENCE: the reference's cases, the same way; empty (make test) runs
# no reference. CONTAINERS: how many containers containers_at_once runs at once (make test 10,
# make soak 20).
. /tests/lib.sh
. /tests/containerd-lib.sh
CONTAINERS=${CONTAINERS:-20}

# Loaded first, as the systemd unit's ExecStartPre does: the two conformance processes' first
# mounts start at once, and one failed with ENODEV when both made the kernel load the module on
# demand (its modprobe, busybox's here, returned before the load that was under way registered
# the filesystem type).
modprobe lcfs

# The cases' directories and image files: on tmpfs, sparse. Its lines go to the console at the
# end, in one piece.
TMPDIR=/tmp sh /tests/gotest-results.sh -k /tests/containerd-conformance.skips -o /tmp/gotest-lcfs.out \
	containerd-conformance lcfs-snapshot-conformance -test.run "^TestLcfs\$/${CONFORMANCE_CASES:-.}" -test.v -test.parallel 4 \
	-test.timeout 35m >/tmp/conformance.console 2>&1 &
conformance=$!
reference=
if [ -n "${CONFORMANCE_REFERENCE:-}" ]; then
	TMPDIR=/tmp sh /tests/gotest-results.sh -k /tests/containerd-conformance.skips -o /tmp/gotest-overlay.out \
		containerd-reference lcfs-snapshot-conformance -test.run "^TestOverlay\$/$CONFORMANCE_REFERENCE" \
		-test.v -test.parallel 4 -test.timeout 35m >/tmp/reference.console 2>&1 &
	reference=$!
fi

t_containerd_loads_lcfs() {
	write_containerd_config
	start_snapshotter
	start_containerd
	ctr plugins ls | grep -E 'io.containerd.snapshotter.v1 +lcfs +- +ok'
	grep -q " $M lcfs " /proc/mounts || fail "the snapshotter did not mount /dev/vda at $M"
	used >/tmp/used.empty
	assert_eq "$(snaps)" "" "snapshots of a new filesystem"
}

t_import_unpacks_into_layers() {
	ctr image import --snapshotter lcfs /images/debian-slim.tar
	ctr image import --snapshotter lcfs /images/busybox.tar
	ctr image ls | grep -q "$DEBIAN"
	# Two committed layers of the Debian image and one of busybox, each a frozen LCFS layer.
	snaps
	assert_eq "$(snaps | awk '$3 == "Committed"' | wc -l)" 3 "committed snapshots"
	layers
	assert_eq "$(layers | wc -l)" 3 "layers"
	assert_eq "$(layers | awk '$2 != "ro"' | wc -l)" 0 "layers not frozen"
	# The second Debian layer is a clone of the first: its parent in containerd is the base.
	assert_eq "$(snaps | awk '$2 != "-"' | wc -l)" 1 "snapshots with a parent"
}

t_run_reads_image_and_writes() {
	ctr run --rm --snapshotter lcfs $DEBIAN c1 sh -c '
		set -e
		grep -q "^12" /etc/debian_version
		test "$(cat /etc/lcfs-image)" = "lcfs test image, layer 2"
		test "$(cat /etc/motd)" = "replaced by layer 2"
		test ! -e /usr/share/doc/tar
		test -d /usr/share/doc/dpkg
		echo written >/root/f
		test "$(cat /root/f)" = written
		dd if=/dev/urandom of=/root/big bs=1M count=8 2>/dev/null
		sync
		cmp /root/big /root/big
		rm /etc/motd
		echo ran-ok' >/tmp/c1.out
	cat /tmp/c1.out
	grep -q ran-ok /tmp/c1.out
	# The container's snapshot went with it, and its writes never reached the image.
	! has_snap c1 || fail "c1's snapshot is left"
	ctr run --rm --snapshotter lcfs $DEBIAN c2 sh -c 'test ! -e /root/f && test -e /etc/motd'
}

t_containers_at_once() {
	i=1
	while [ $i -le "$CONTAINERS" ]; do
		ctr run --rm --snapshotter lcfs $DEBIAN p$i sh -c "echo $i >/mine; sleep 3; test \"\$(cat /mine)\" = $i" \
			>/tmp/p$i.out 2>&1 &
		eval "pid$i=\$!"
		i=$((i + 1))
	done
	bad=0 i=1
	while [ $i -le "$CONTAINERS" ]; do
		eval "wait \$pid$i" || { echo "container p$i failed:"; cat /tmp/p$i.out; bad=1; }
		i=$((i + 1))
	done
	[ $bad = 0 ] || fail "containers failed"
	assert_eq "$(snaps | awk '$3 == "Active"' | wc -l)" 0 "active snapshots left"
}

t_committed_container_is_a_new_layer() {
	ctr run --snapshotter lcfs $DEBIAN build1 sh -c 'echo built >/built && rm /etc/motd'
	# The container's changes as an image layer blob in the content store (containerd's differ
	# over the mounts), which ctr also writes out. --keep makes the blob a collection root:
	# without it, ctr's lease goes when ctr exits and the collector may take the blob at once.
	snap diff --keep build1 >/tmp/diff.tgz
	digest=sha256:$(sha256sum </tmp/diff.tgz | cut -d' ' -f1)
	echo "diff: $digest"
	ctr content ls | grep -q "^$digest" || fail "the diff $digest is not in the content store"
	gzip -dc </tmp/diff.tgz | tar -t >/tmp/diff.list
	cat /tmp/diff.list
	grep -qx './built\|built' /tmp/diff.list || fail "the diff lacks /built"
	grep -q 'etc/.wh.motd' /tmp/diff.list || fail "the diff lacks the whiteout of /etc/motd"
	assert_eq "$(wc -l </tmp/diff.list | tr -d ' ')" 3 "entries in the diff (built, etc, etc/.wh.motd)"
	ctr content rm "$digest"
	# Commit the container's snapshot: its layer freezes in place under the new name.
	parent=$(snap info build1 | awk -F'"' '/"Parent"/ { print $4 }')
	snap commit built-layer build1
	assert_eq "$(snap info built-layer | awk -F'"' '/"Kind"/ { print $4 }')" Committed "kind"
	ctr container rm --keep-snapshot build1
	# A new snapshot on top sees the committed change.
	mkdir -p /tmp/m
	# ctr prints the mount command (a bind mount of the layer's directory) rather than running it.
	snap prepare --target /tmp/m k2 built-layer | tee /tmp/mount.sh
	grep -q "^mount -t bind $M/" /tmp/mount.sh || fail "not a bind mount of a layer"
	sh -e /tmp/mount.sh
	assert_eq "$(cat /tmp/m/built)" built "committed file"
	[ ! -e /tmp/m/etc/motd ] || fail "the deletion was not committed"
	umount /tmp/m
	snap rm k2
	snap rm built-layer
	assert_eq "$(snap info "$parent" | awk -F'"' '/"Kind"/ { print $4 }')" Committed "parent kept"
}

t_snapshots_usage_ls_rm() {
	ctr run --snapshotter lcfs $DEBIAN u1 sh -c 'dd if=/dev/zero of=/big bs=1M count=16 2>/dev/null && sync'
	snap usage u1
	size=$(snap usage -b u1 | awk '$1 == "u1" { print $2 }')
	echo "usage of u1: $size bytes"
	[ "$size" -ge $((16 << 20)) ] || fail "u1's usage $size is under the 16 MiB it wrote"
	[ "$size" -lt $((20 << 20)) ] || fail "u1's usage $size counts more than its own data"
	ctr container rm u1
	! has_snap u1 || fail "u1's snapshot is left"
	# Prepare, list and remove by hand.
	base=$(snaps | awk '$3 == "Committed" && $2 == "-" { print $1; exit }')
	snap prepare hand "$base" >/dev/null
	assert_eq "$(snaps | awk '$1 == "hand" { print $2, $3 }')" "$base Active" "hand"
	snap rm hand
	! has_snap hand || fail "hand is still listed"
}

# The filesystem's own data and the daemon's database account for the rest: within this of the
# space used before the import.
SLACK=$((4 << 20))

t_image_rm_and_gc_return_space() {
	ctr image rm --sync $DEBIAN $BUSYBOX
	assert_eq "$(snaps)" "" "snapshots after the images' removal"
	# containerd's collector removed the snapshots; the daemon removed their layers.
	assert_eq "$(layers)" "" "layers after the collection"
	# Their space comes back in the background.
	wait_for 120 reclaimed || fail "reclaim did not finish"
	now=$(used) empty=$(cat /tmp/used.empty)
	echo "used: $now bytes, $empty before the import"
	[ "$now" -le $((empty + SLACK)) ] || fail "space not returned: $now bytes used, $empty before the import"
}

t_fsck_clean_after_containers() {
	stop_containerd
	stop_snapshotter
	umount $M
	fsck.lcfs -n /dev/vda
	start_snapshotter
	start_containerd
}

t_snapshotter_sigkill_under_load() {
	ctr image import --snapshotter lcfs /images/busybox.tar
	base=$(snaps | awk '$3 == "Committed" { print $1; exit }')
	[ -n "$base" ] || fail "no committed snapshot of the busybox image"
	# A loop of prepare, commit and remove through containerd while the daemon is killed and
	# restarted; requests that meet a dead daemon fail and the loop goes on.
	(
		i=0
		while [ ! -e /tmp/stop-loop ]; do
			i=$((i + 1))
			snap prepare a$i "$base" >/dev/null 2>&1 || :
			snap commit c$i a$i >/dev/null 2>&1 || :
			snap rm c$i >/dev/null 2>&1 || :
			snap rm a$i >/dev/null 2>&1 || :
		done
		echo "$i rounds" >/tmp/loop.rounds
	) &
	loop=$!
	for delay in 2 3 5; do
		sleep $delay
		stop_snapshotter KILL
		start_snapshotter
	done
	sleep 2
	touch /tmp/stop-loop
	wait $loop
	cat /tmp/loop.rounds
	grep -c 'recover\|orphan' /tmp/lcfs-grpc.log || :
	# containerd carries on: a container runs, and a remove of every leftover works.
	ctr run --rm --snapshotter lcfs $BUSYBOX after sh -c 'echo alive' | grep -q alive
	for k in $(snaps | awk '$1 ~ /^[ac][0-9]+$/ { print $1 }'); do snap rm "$k" 2>/dev/null || :; done
	for k in $(snaps | awk '$1 ~ /^[ac][0-9]+$/ { print $1 }'); do snap rm "$k"; done
	assert_eq "$(snaps | awk '$1 ~ /^[ac][0-9]+$/' | wc -l)" 0 "loop snapshots left"
	# Nothing leaked: after the image goes and the collector runs, no layer is left.
	ctr image rm --sync $BUSYBOX
	assert_eq "$(snaps)" "" "snapshots"
	assert_eq "$(layers)" "" "layers"
	stop_containerd
	stop_snapshotter
	umount $M
	fsck.lcfs -n /dev/vda
}

run_tests \
	containerd_loads_lcfs import_unpacks_into_layers run_reads_image_and_writes \
	containers_at_once committed_container_is_a_new_layer snapshots_usage_ls_rm \
	image_rm_and_gc_return_space fsck_clean_after_containers snapshotter_sigkill_under_load
wait $conformance || :
[ -z "$reference" ] || wait $reference || :
cat /tmp/conformance.console
[ -z "$reference" ] || cat /tmp/reference.console
