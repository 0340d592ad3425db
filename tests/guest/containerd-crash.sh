# lcfs-needs: debian-root
# lcfs-needs: crash-kill
# lcfs-crash-delays: 6
# lcfs-timeout: 900
# lcfs-disk: 2G
# The VM killed during container churn (scripts/vm-crash.sh drives the rounds: two boots on one
# scratch disk, the first killed with SIGKILL, as tests/guest/crash.sh).
#
# Boot 1 (lcfs_phase=1): containerd-lcfs-grpc formats the scratch disk and mounts it; containerd's
# own state (its metadata database and content store, /var/lib/containerd) lives on a layer of
# the same filesystem, ".containerd-state", so that it survives the kill with the layers (the
# guest's root is discarded at every boot). The Debian image is imported through the snapshotter;
# then four workers run `ctr run --rm` containers that write and sync a file, one after the
# other, and a fifth prepares, commits and removes snapshots. Once six containers have finished,
# the guest prints LCFS-CRASH-NOW and the host kills QEMU a few seconds later, with containers
# being created, running and removed.
#
# Boot 2 (lcfs_phase=2) starts both daemons on the killed disk, as an administrator would after
# the machine came back, and checks: fsck.lcfs -n finds the filesystem clean before the mount;
# both daemons start, containerd still has the image; the containers, leases and snapshots
# boot 1 left in flight can all be removed; the image reads as built and new containers run;
# containerd's snapshots and the daemon's layers agree one to one once containerd's garbage
# collection ran (nothing leaked, nothing lost); removing the image returns the space its
# layers held; fsck is clean after the unmount.
. /tests/lib.sh
. /tests/containerd-lib.sh

phase=0 round=0
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	lcfs_phase=*) phase=${arg#lcfs_phase=} ;;
	lcfs_round=*) round=${arg#lcfs_round=} ;;
	esac
done
# The records for boot 2 go to fd 3, the console, also from inside a test.
exec 3>&1

STATE=.containerd-state

attach_state() {
	lcfs layer list -m $M | awk -v n=$STATE 'NR > 1 && $2 == n { f = 1 } END { exit !f }' ||
		lcfs layer create $STATE -m $M
	mkdir -p /var/lib/containerd
	mount --bind $M/$STATE /var/lib/containerd
}

start_all() {
	write_containerd_config
	start_snapshotter
	attach_state
	start_containerd
}

stop_all() {
	stop_containerd
	umount /var/lib/containerd
	stop_snapshotter
	umount $M
	! grep -q ' lcfs ' /proc/mounts || fail "LCFS still mounted: $(grep ' lcfs ' /proc/mounts)"
}

# Used bytes of the filesystem less the own bytes of the layers named ".*": containerd's state
# and the daemon's database, which keep what they like (freed pages, logs).
image_used() {
	dot=$(lcfs layer list -m $M --bytes | awk 'NR > 1 && $2 ~ /^\./ { s += $8 } END { print s + 0 }')
	echo $(($(used) - dot))
}

# The keys of containerd's snapshots, and those of the daemon's layers: a layer is named after
# its snapshotter key, "NAMESPACE/ID/KEY" percent-encoded (%2F for "/"); containerd lists KEY.
snapshot_keys() { snaps | awk '{ print $1 }' | sort; }
layer_keys() { layers | awk '{ print $1 }' | sed 's/^[^%]*%2F[0-9]*%2F//; s/%25/%/g' | sort; }
same_keys() { [ "$(snapshot_keys)" = "$(layer_keys)" ]; }

# One worker's containers, one after the other until the kill: each writes and syncs a file.
churn_worker() {
	_i=0
	while :; do
		_i=$((_i + 1))
		ctr run --rm --snapshotter lcfs $DEBIAN "w$1-$_i" sh -c \
			'dd if=/dev/urandom of=/data bs=64k count=16 2>/dev/null && sync /data && cat /etc/debian_version' &&
			echo "w$1-$_i" >>/tmp/finished
	done
}

# Snapshots prepared, committed and removed through containerd, until the kill.
snapshot_worker() {
	_i=0
	while :; do
		_i=$((_i + 1))
		snap prepare "a$_i" "$1" && snap commit "c$_i" "a$_i" && snap rm "c$_i"
	done
}

finished() { [ "$(wc -l </tmp/finished)" -ge "$1" ]; }

t_churn_started() {
	start_all
	echo "LCFS-USED-EMPTY $(image_used)" >&3
	echo "LCFS-INFO: importing the image" >&3
	ctr image import --snapshotter lcfs /images/debian-slim.tar
	echo "LCFS-INFO: image imported, $(image_used) bytes used; starting containers" >&3
	top=$(snaps | awk '$3 == "Committed" && $2 != "-" { print $1 }')
	[ -n "$top" ] || fail "no top layer of the image"
	: >/tmp/finished
	for w in 1 2 3 4; do churn_worker $w >/tmp/worker$w.log 2>&1 & done
	snapshot_worker "$top" >/tmp/snapshot-worker.log 2>&1 &
	if ! wait_for 180 finished 6; then
		tail -5 /tmp/worker*.log /tmp/snapshot-worker.log
		tail -20 /tmp/containerd.log
		fail "containers did not finish"
	fi
	echo "LCFS-INFO: $(wc -l </tmp/finished) containers finished" >&3
}

t_fsck_clean_after_crash() {
	fsck.lcfs -n /dev/vda
}

t_restart_after_crash() {
	start_all
	ctr plugins ls | grep -E 'io.containerd.snapshotter.v1 +lcfs +- +ok'
	ctr image ls | grep -q "$DEBIAN" || fail "containerd lost the image"
	grep -i 'recover\|orphan\|unreferenced' /tmp/lcfs-grpc.log | sed 's/^/LCFS-INFO: daemon: /' >&3 || :
	echo "containers:"; ctr containers ls
	echo "snapshots:"; snaps
	echo "layers:"; layers
}

# What boot 1 left in flight goes as an administrator would remove it: containers, the leases
# of calls that never finished, then any snapshot not part of the image.
t_leftovers_removed() {
	echo "LCFS-INFO: left in flight: $(ctr containers ls -q | wc -l) containers," \
		"$(ctr leases ls -q | wc -l) leases, $(snaps | awk '$3 != "Committed" || $1 ~ /^c[0-9]+$/' | wc -l)" \
		"snapshots, $(layers | wc -l) layers" >&3
	for c in $(ctr containers ls -q); do
		ctr tasks rm -f "$c" 2>/dev/null || :
		ctr containers rm "$c"
	done
	for l in $(ctr leases ls -q); do ctr leases rm "$l"; done
	# Removing a lease lets containerd's collector remove the snapshots it held, beside this loop:
	# a removal may find its snapshot gone, and only that failure is accepted.
	for k in $(snaps | awk '$3 != "Committed" || $1 ~ /^c[0-9]+$/ { print $1 }'); do
		snap rm "$k" 2>/tmp/snap-rm.err && continue
		grep -q "not found" /tmp/snap-rm.err && ! has_snap "$k" || { cat /tmp/snap-rm.err; fail "removing $k"; }
	done
	assert_eq "$(ctr containers ls -q)" "" "containers"
	assert_eq "$(snaps | awk '$3 != "Committed"')" "" "snapshots not committed"
	assert_eq "$(snaps | wc -l)" 2 "snapshots (the image's two layers)"
}

t_containers_run_after_crash() {
	for i in 1 2 3 4; do
		ctr run --rm --snapshotter lcfs $DEBIAN "after$i" sh -c '
			set -e
			grep -q "^12" /etc/debian_version
			test "$(cat /etc/lcfs-image)" = "lcfs test image, layer 2"
			test "$(cat /etc/motd)" = "replaced by layer 2"
			test ! -e /usr/share/doc/tar
			dd if=/dev/urandom of=/f bs=64k count=16 2>/dev/null
			cmp /f /f
			echo ran-ok' >/tmp/after$i.out 2>&1 &
		eval "pid$i=\$!"
	done
	bad=0
	for i in 1 2 3 4; do
		eval "wait \$pid$i" && grep -q ran-ok /tmp/after$i.out || { cat /tmp/after$i.out; bad=1; }
	done
	[ $bad = 0 ] || fail "containers failed after the crash"
}

# containerd's collector (which a removal schedules) removes the daemon's snapshots it does not
# know, then asks the daemon to clean up the layers no snapshot references.
t_snapshots_match_layers() {
	if ! wait_for 60 same_keys; then
		echo "containerd's snapshots:"; snapshot_keys
		echo "the daemon's layers:"; layers
		fail "containerd's snapshots and the daemon's layers differ"
	fi
	echo "LCFS-INFO: $(snapshot_keys | wc -l) snapshots, one layer each" >&3
}

SLACK=$((4 << 20))

no_snapshots() { [ -z "$(snaps)" ]; }

# One more garbage collection by containerd: a lease deleted synchronously runs one.
collect_garbage() {
	_lease=$(ctr leases create | awk 'NR == 1 { print $1 }') && [ -n "$_lease" ] &&
		ctr leases delete --sync "$_lease" >/dev/null
}

t_image_rm_returns_space() {
	ctr image rm --sync $DEBIAN
	# Seen twice: the image's two snapshots still listed a minute after the synchronous removal,
	# with no lease, container, content or other snapshot left to hold them, and the snapshotter
	# never asked to remove them (perhaps the collection ran while the previous test's
	# containers were still going away). Another collection is asked for then, and said; what
	# holds them is shown if they stay even so.
	if ! wait_for 30 no_snapshots; then
		echo "LCFS-INFO: the image's snapshots stayed 30 s after its removal; one more collection" >&3
		collect_garbage || echo "LCFS-INFO: the collection failed" >&3
	fi
	if ! wait_for 30 no_snapshots; then
		echo "images:"; ctr images ls -q
		echo "leases:"; ctr leases ls
		echo "containers:"; ctr containers ls -q
		echo "content:"; ctr content ls
		echo "snapshots:"; snap ls
		ctr snapshots --snapshotter lcfs info "$(snaps | awk 'NR == 1 { print $1 }')"
		grep -i 'gc\|garbage\|remov' /tmp/containerd.log | tail -20
		tail -20 /tmp/lcfs-grpc.log
		fail "the image's snapshots stayed after its removal"
	fi
	assert_eq "$(layers)" "" "layers after the collection"
	wait_for 120 reclaimed || fail "reclaim did not finish"
	empty=$(awk '/^LCFS-USED-EMPTY/ { print $2 }' /tests/crash.manifest)
	[ -n "$empty" ] || fail "no LCFS-USED-EMPTY in boot 1's records"
	now=$(image_used)
	echo "used outside the dotted layers: $now bytes, $empty before the import (filesystem: $(used))"
	[ "$now" -le $((empty + SLACK)) ] || fail "space not returned: $now bytes used, $empty before the import"
}

t_fsck_clean_at_end() {
	stop_all
	fsck.lcfs -n /dev/vda
}

CHECKS="fsck_clean_after_crash restart_after_crash leftovers_removed containers_run_after_crash
	snapshots_match_layers image_rm_returns_space fsck_clean_at_end"

case "$phase" in
1)
	echo "LCFS-INFO: containerd crash round $round, boot 1: container churn"
	# Boot 1 declares the whole round: boot 2's checks too.
	plan "round${round}_churn_started" $(for c in $CHECKS; do echo "round${round}_$c"; done)
	run_test "round${round}_churn_started" t_churn_started
	# Without churn there is nothing to crash: no LCFS-CRASH-NOW, which the host reports.
	[ "$_rc" = 0 ] || exit 0
	echo "LCFS-CRASH-NOW"
	sleep 100000
	;;
2)
	echo "LCFS-INFO: containerd crash round $round, boot 2: recovery"
	plan $(for c in $CHECKS; do echo "round${round}_$c"; done)
	for c in $CHECKS; do run_test "round${round}_$c" "t_$c"; done
	;;
*)
	plan crash_suite_phase
	echo "LCFS-RESULT: not ok crash_suite_phase (run it through scripts/vm.sh: no lcfs_phase=)"
	;;
esac
