# lcfs-needs: corrupt-images
# lcfs-timeout: 2400
# Corrupted images: hundreds of mutants of a populated image (userspace/crates/lcfs-corrupt; the
# harness generates them into /tests/corrupt: base.img, blocks.bin, mutants.txt), each damaging
# 1 to 3 live metadata blocks (superblock copies, tree nodes, map nodes), most with their
# checksum recomputed so that the damage reaches the checks behind it.
#
# Each mutant is mounted read-write; if that succeeds, `lcfs-corrupt exercise` walks the tree
# (lstat, every xattr, readdir, readlink, the first MiB of every file) and changes the read-write
# clone (create, write 8 KiB, rename, unlink, mkdir, setxattr, copy-on-write into a file shared
# with the frozen layer, truncate, unlink an old file, a create in the frozen layer that must
# fail, syncfs), then the filesystem is unmounted. If the read-write mount is refused (it also
# runs crash recovery, which reads the read-write layers), a read-only mount is tried and walked,
# so that damage also reaches the lookups, reads and xattr code.
# Errors are expected and counted. What fails the suite is a hang (each mutant runs under
# `timeout -s KILL`), a kernel WARNING, BUG, Oops, KASAN or lockdep report (the harness checks
# the console), or an image fsck.lcfs finds clean that the kernel's changes leave damaged.
#
# Mutants run in CORRUPT_WORKERS parallel workers (default: one per CPU), each with its own image,
# loop device and mount point. Environment: CORRUPT_FIRST (first mutant), CORRUPT_COUNT (default:
# all in the list), CORRUPT_TIMEOUT (seconds per mutant, default 60), CORRUPT_WORKERS.
. /tests/lib.sh

D=/tests/corrupt
WORKERS=${CORRUPT_WORKERS:-$(nproc)}

# Tests run with their output in a file; progress goes to the console.
info() { echo "LCFS-INFO: $*" >/dev/console; }
# Centiseconds since boot, without a fork.
cs() {
	read -r _up _ </proc/uptime
	echo "${_up%.*}${_up#*.}"
}

# Worker W's image, loop device (once attached) and mount point.
worker_paths() {
	IMG=/tmp/img.$1
	MNT=/mnt/w$1
	LOOP=$(cat /tmp/loop.$1 2>/dev/null || true)
}

# One mounted session, run as `sh corrupt.sh session WORKER` under timeout: prints its outcome.
# A read-write mount first; if it is refused (a read-write mount also runs crash recovery, which
# reads the read-write layers), a read-only one, so that the damage reaches lookups and reads.
# `lcfs-corrupt exercise` does the walk and the changes (userspace/crates/lcfs-corrupt).
if [ "${1:-}" = session ]; then
	worker_paths "$2"
	t=$(cs)
	if mount -t lcfs "$LOOP" $MNT 2>/tmp/mount.err.$2; then
		t=$(($(cs) - t))
		out=$(lcfs-corrupt exercise $MNT --write work --frozen default)
		t2=$(cs)
		umount $MNT || out="errors umount; $out"
		echo "$out [mount ${t}0 ms, umount $(($(cs) - t2))0 ms]"
		exit 0
	fi
	why=$(sed -n 's/.*failed: //p' /tmp/mount.err.$2 | tr ' ' '_')
	if ! mount -t lcfs -o ro "$LOOP" $MNT 2>/dev/null; then
		echo "refused $why"
		exit 0
	fi
	out=$(lcfs-corrupt exercise $MNT)
	umount $MNT || out="errors umount; $out"
	echo "ro-$out (rw: $why)"
	exit 0
fi

# attach W: worker W's image, a tmpfs file behind a loop device. Between mutants only the part
# of the base image that is not zero is written back (free space may keep what earlier sessions
# wrote: it does not matter), then the patches, then the loop device's page cache is dropped.
attach() {
	worker_paths "$1"
	blocks=$(sed -n '1s/.* blocks \([0-9]*\).*/\1/p' $D/mutants.txt)
	rm -f $IMG
	truncate -s $((blocks * 4096)) $IMG
	LOOP=$(losetup -f)
	losetup "$LOOP" $IMG
	echo "$LOOP" >/tmp/loop.$1
	mkdir -p $MNT
}

# run_mutant W PATCHES: worker W's image made the base image with the patches
# (INDEX:BLOCKNR,...), mounted and exercised. Sets OUTCOME.
run_mutant() {
	W=$1
	worker_paths "$W"
	shift
	dd if=$D/base.img of=$IMG bs=65536 conv=notrunc 2>/dev/null
	_old=$IFS
	IFS=,
	for _p in $1; do
		dd if=$D/blocks.bin of=$IMG bs=4096 skip="${_p%%:*}" seek="${_p#*:}" count=1 \
			conv=notrunc 2>/dev/null
	done
	IFS=$_old
	blockdev --flushbufs "$LOOP"
	OUTCOME=$(timeout -s KILL "${CORRUPT_TIMEOUT:-60}" sh /tests/corrupt.sh session "$W")
	_rc=$?
	[ $_rc = 0 ] || OUTCOME="killed status $_rc (after: ${OUTCOME:-nothing})"
	if grep -q " $MNT lcfs " /proc/mounts; then
		umount $MNT 2>/dev/null || umount -l $MNT
		OUTCOME="$OUTCOME (left mounted)"
		# The lazily unmounted filesystem may still write: go on with a new loop device.
		losetup -d "$LOOP" 2>/dev/null || true
		attach "$W"
	fi
}

t_setup() {
	for f in mutants.txt base.img blocks.bin; do [ -f $D/$f ] || fail "$D/$f missing"; done
	head -1 $D/mutants.txt
	modprobe lcfs
	w=0
	while [ $w -lt "$WORKERS" ]; do
		attach $w
		w=$((w + 1))
	done
	echo "$WORKERS workers"
}

t_base_image_clean() {
	worker_paths 0
	dd if=$D/base.img of=$IMG bs=65536 conv=notrunc 2>/dev/null
	mount -t lcfs -o ro "$LOOP" $MNT
	ls -la $MNT $MNT/default/data
	umount $MNT
	t=$(cs)
	run_mutant 0 ""
	info "base image: $OUTCOME in $(($(cs) - t))0 ms"
	case "$OUTCOME" in clean*) ;; *) fail "outcome on the undamaged image: $OUTCOME" ;; esac
	fsck.lcfs -n $IMG
}

# worker W: runs the mutants of /tmp/mutants whose line number is W modulo the worker count;
# appends "ID FSCK KIND" for each to /tmp/results.W.
worker() {
	_n=0
	while read -r id fsck patches desc; do
		_n=$((_n + 1))
		[ $((_n % WORKERS)) = "$1" ] || continue
		t=$(cs)
		run_mutant "$1" "$patches"
		t=$(($(cs) - t))
		case "$OUTCOME" in
		refused*) kind=refused ;;
		ro-errors*) kind=ro_errors ;;
		ro-clean*) kind=ro_clean ;;
		errors*) kind=errors ;;
		clean*) kind=clean ;;
		*) kind=hung ;;
		esac
		info "mutant $id [fsck $fsck] $OUTCOME (${t}0 ms) | $desc"
		if [ "$fsck" = clean ]; then
			# Images fsck finds clean should mount, and must stay clean through the kernel's
			# changes.
			case $kind in refused | ro_*) info "mutant $id: fsck-clean image refused read-write" ;; esac
			if [ "$kind" != hung ] && ! fsck.lcfs -n $IMG >/tmp/fsck.out.$1 2>&1; then
				kind=${kind}_broke_clean
				info "mutant $id: clean image damaged by the kernel:"
				sed 's/^/    /' /tmp/fsck.out.$1 | head -20 >/dev/console
			fi
		fi
		[ "$kind" != hung ] || info "mutant $id hung (see the console above)"
		echo "$id $fsck $kind" >>/tmp/results.$1
	done </tmp/mutants
}

t_mutants_no_hang() {
	T0=$(cs)
	first=${CORRUPT_FIRST:-0}
	grep -v '^#' $D/mutants.txt | awk -v first="$first" -v count="${CORRUPT_COUNT:-0}" \
		'$1 >= first && (count == 0 || n < count) { n++; print }' >/tmp/mutants
	rm -f /tmp/results.*
	w=0
	while [ $w -lt "$WORKERS" ]; do
		worker $w &
		w=$((w + 1))
	done
	wait
	cat /tmp/results.* >/tmp/results
	for v in clean damaged unreadable; do
		info "fsck $v: $(awk -v v=$v '$2 == v { sub(/_broke_clean/, "", $3); c[$3]++ } END {
			printf "refused %d; read-only only: with errors %d, clean %d; read-write: with errors %d, clean %d; hung %d",
				c["refused"], c["ro_errors"], c["ro_clean"], c["errors"], c["clean"], c["hung"] }' /tmp/results)"
	done
	n=$(wc -l </tmp/results)
	info "$n mutants in $((($(cs) - T0) / 100)) s with $WORKERS workers: $(awk '{ sub(/_broke_clean/, "", $3); c[$3]++ } END {
		printf "%d mount refused; mounted read-only only: %d with errors, %d clean; mounted read-write: %d with errors, %d clean; %d hung or killed",
			c["refused"], c["ro_errors"], c["ro_clean"], c["errors"], c["clean"], c["hung"] }' /tmp/results)"
	hung=$(grep -c ' hung$' /tmp/results || true)
	[ "$hung" = 0 ] || fail "$hung mutants hung"
	assert_eq "$n" "$(wc -l </tmp/mutants)" "mutants run"
}

t_clean_images_stay_clean() {
	stricter=$(awk '$2 == "clean" && $3 ~ /^(refused|ro_)/' /tmp/results | wc -l)
	[ "$stricter" = 0 ] || echo "note: $stricter fsck-clean images were refused read-write"
	grep '_broke_clean$' /tmp/results || true
	assert_eq "$(grep -c '_broke_clean$' /tmp/results)" 0 "fsck-clean images damaged by the kernel's changes"
}

t_module_unloads() {
	for f in /tmp/loop.*; do losetup -d "$(cat "$f")"; done
	modprobe -r lcfs
	! grep -q '^lcfs ' /proc/modules || fail "module still loaded"
	dmesg | grep 'lcfs: unloaded' | tail -1 | grep -q 'no inodes left'
}

run_tests \
	setup base_image_clean mutants_no_hang clean_images_stay_clean module_unloads
