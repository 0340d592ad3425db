# SPDX-License-Identifier: GPL-2.0
# Sourced by scripts/vm.sh for a suite with a "# lcfs-needs: crash-kill" line (tests/guest/crash.sh):
# crash rounds, each two boots on one fresh scratch disk.
#
# Boot 1 (kernel command line lcfs_phase=1 lcfs_round=N) runs the suite's workload. Once the guest
# prints LCFS-CRASH-NOW, the host waits the round's delay and kills QEMU with SIGKILL, in the
# middle of the workload. Boot 2 (lcfs_phase=2) gets the LCFS- lines boot 1 printed (which files
# were fsynced, with their checksums, and what was written without fsync) as
# /tests/crash.manifest, in a second cpio archive appended to the initramfs, and checks the disk.
# Both boots' consoles go into the suite's log, so the kernel-report check covers them.
#
#   LCFS_CRASH_DELAYS  seconds from LCFS-CRASH-NOW to the kill, one round each; default the
#                      suite's "# lcfs-crash-delays: ..." line, else "0 3 8"
#
# Uses vm.sh's qemu, disk, disk_size, build, suite, kunit, vm_timeout and logf; sets qrc and
# crash_bad. KUnit is off in these boots (the other suites run it).
#
# The scratch disk uses cache=none here (O_DIRECT on the image file) instead of cache=unsafe. The
# guest sees a volatile write cache either way and sends its flushes; cache=unsafe ignores them,
# cache=none turns each into an fdatasync of the image file, so a flush the guest saw complete is
# on the host's disk, not only in QEMU's or the host's cache. (Killing QEMU is not a power cut: the
# host keeps every write QEMU completed, flushed or not. What the kill tests is the filesystem's
# own protocol: that fsync waits for its data and commit, and that whatever state the disk is in
# when the guest stops mid-transaction, recovery finds a clean filesystem. Lost unflushed writes
# and reordering are simulated on the host, userspace/crates/lcfs-image/tests/crash.rs.)
# cache=writethrough would hide the write cache from the guest, so its flushes would not be sent.

crash_delays=(${LCFS_CRASH_DELAYS:-$(sed -n 's/^# lcfs-crash-delays: *//p' "$LCFS_ROOT/tests/guest/$suite.sh" | sed -n 1p)})
[ ${#crash_delays[@]} -gt 0 ] || crash_delays=(0 3 8)

# crash_qemu PHASE ROUND INITRD: vm.sh's QEMU command for one boot of a round, in the array q.
crash_qemu() {
	q=()
	local a
	for a in "${qemu[@]}"; do
		case "$a" in
		"file=$disk,"*) a="file=$disk,if=virtio,format=raw,cache=none" ;;
		*"lcfs_suite=$suite"*) a="${a/"$kunit"/kunit.enable=0} lcfs_phase=$1 lcfs_round=$2" ;;
		"$build/initramfs.cpio.gz") a=$3 ;;
		esac
		q+=("$a")
	done
}

set +e
: >"$logf"
start=$(date +%s)
round=0
for delay in "${crash_delays[@]}"; do
	round=$((round + 1))
	rm -f "$disk"
	truncate -s "$disk_size" "$disk"

	# Boot 1: the workload, killed after the marker.
	boot1="$build/logs/$name.round$round.boot1.log"
	crash_qemu 1 "$round" "$build/initramfs.cpio.gz"
	log "crash round $round: boot 1, the workload; SIGKILL $delay s after LCFS-CRASH-NOW"
	t1=$(date +%s)
	"${q[@]}" </dev/null >"$boot1.raw" 2>&1 &
	qpid=$!
	seen=0
	while kill -0 "$qpid" 2>/dev/null; do
		if grep -q '^LCFS-CRASH-NOW' "$boot1.raw"; then seen=1; break; fi
		[ $(($(date +%s) - t1)) -lt "$vm_timeout" ] || break
		sleep 0.2
	done
	[ $seen = 0 ] || sleep "$delay"
	kill -KILL "$qpid" 2>/dev/null
	wait "$qpid" 2>/dev/null
	tr -d '\r' <"$boot1.raw" >"$boot1"
	rm -f "$boot1.raw"
	{ echo "=== crash round $round, boot 1 (killed $delay s after LCFS-CRASH-NOW) ==="; cat "$boot1"; } >>"$logf"
	log "crash round $round: boot 1 killed after $(($(date +%s) - t1)) s; $(grep -c '^LCFS-FSYNCED' "$boot1") fsynced files"
	if [ $seen = 0 ]; then
		tail -30 "$boot1"
		echo "VM-CHECK: crash round $round: boot 1 never printed LCFS-CRASH-NOW"
		crash_bad=1
		continue
	fi

	# Boot 2: the same disk, and boot 1's records.
	mdir="$build/crash-manifest"
	rm -rf "$mdir"
	mkdir -p "$mdir/tests"
	grep '^LCFS-' "$boot1" >"$mdir/tests/crash.manifest"
	initrd2="$build/initramfs-crash.cpio.gz"
	cp "$build/initramfs.cpio.gz" "$initrd2"
	(cd "$mdir" && echo tests/crash.manifest | cpio -o -H newc --quiet | gzip -1) >>"$initrd2"
	boot2="$build/logs/$name.round$round.boot2.log"
	crash_qemu 2 "$round" "$initrd2"
	log "crash round $round: boot 2, fsck and checks"
	t2=$(date +%s)
	timeout --foreground -k 10 "$vm_timeout" "${q[@]}" </dev/null 2>&1 | tr -d '\r' >"$boot2"
	rc=${PIPESTATUS[0]}
	{ echo "=== crash round $round, boot 2 ==="; cat "$boot2"; } >>"$logf"
	grep '^LCFS-\(RESULT\|INFO\)' "$boot2" | sed 's/^/    /'
	sed -n '/^LCFS-RESULT: not ok/,/^LCFS-RESULT/p' "$boot2" | grep '^    |' | head -40
	log "crash round $round: boot 2 finished in $(($(date +%s) - t2)) s (qemu status $rc)"
	if ! grep -q '^LCFS-DONE' "$boot2"; then
		echo "VM-CHECK: crash round $round: boot 2 did not complete (qemu status $rc)"
		crash_bad=1
	fi
done
qrc=0
log "crash rounds finished in $(($(date +%s) - start)) s"
set -e
