#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Boots the test kernel in QEMU with a busybox initramfs holding lcfs.ko (installed under
# /lib/modules with depmod, as users install it), the static userspace tools and the guest scripts.
#
#   scripts/vm.sh --run SUITE [--disk SIZE]   run tests/guest/SUITE.sh, log to build/logs/SUITE.log
#   --name NAME                              name the run's log and disk NAME instead of SUITE
#                                            (one suite run twice with different settings)
#   scripts/vm.sh --shell [--disk SIZE]       interactive shell (exit with `reboot -f` or Ctrl-A X)
#   --rootfs                                 also attach the Debian root filesystem (fio, stress-ng,
#                                            ...; scripts/mkrootfs.sh) at /debian in the guest; a
#                                            suite asks for it with a "# lcfs-needs: debian-rootfs" line;
#                                            "# lcfs-needs: debian-root" boots the guest into it as
#                                            its root (containerd and runc need a real root)
#   --env NAME=VALUE                         environment variable for the guest suite (repeatable;
#                                            no spaces; on the kernel command line, which hands
#                                            unknown NAME=VALUE parameters to init as environment)
#
# A suite with a "# lcfs-needs: guest-tools" line also gets pjdfstest and fsx in /bin
# (scripts/guest-tools.sh; --shell gets them too), "# lcfs-timeout: SECONDS" raises its default
# timeout, and "# lcfs-disk: SIZE" sets its scratch disk's size when --disk does not (default 256M).
# "# lcfs-needs: conformance" puts containerd's snapshotter test suite, built by
# `scripts/build-go.sh conformance`, in /bin (tests/guest/containerd.sh).
# "# lcfs-needs: churn" puts lcfs-churn, the containerd benchmark's client (`scripts/build-go.sh churn`),
# in /bin (tests/guest/containerdbench.sh).
# "# lcfs-needs: corrupt-images" puts the corrupted images of userspace/crates/lcfs-corrupt in
# /tests/corrupt (LCFS_CORRUPT_COUNT mutants, default 300, of seed LCFS_CORRUPT_SEED, default 1;
# tests/guest/corrupt.sh). "# lcfs-needs: crash-kill" runs the suite as crash rounds: two boots
# per round on one scratch disk, the first killed with SIGKILL mid-workload (scripts/vm-crash.sh;
# LCFS_CRASH_DELAYS, tests/guest/crash.sh). "# lcfs-needs: kmemleak" keeps the test kernel's
# kmemleak on (kmemleak=off otherwise).
#
# The exit status is 0 only if the suite finished (no hang, no crash) and the console shows no
# kernel WARNING, BUG, Oops, KASAN, lockdep, hung-task or leak report. Environment:
#   LCFS_VM_TIMEOUT  seconds before a run counts as hung (default 900, or the suite's lcfs-timeout)
#   LCFS_GUEST_ENV   space-separated NAME=VALUE pairs, as many --env options
#   LCFS_KVM=1       use KVM instead of TCG (KVM does not work on our CI machines)
#   LCFS_KERNEL      debug (default: KASAN, lockdep, kmemleak) or release (LCFS_KERNEL=release
#                    make module builds that kernel and its lcfs.ko)
#   LCFS_KERNEL_ARGS more kernel command-line parameters (e.g. "lockdep.prove_locking=0")
#   LCFS_VM_BUILD    directory for the initramfs, disks and logs (default build/; it must hold
#                    guest/ with the guest tools), so that several runs can share one tree
set -euo pipefail
. "$(dirname "$0")/env.sh"

mode="" suite="" name="" disk_size="" rootfs=0 guest_env=(${LCFS_GUEST_ENV:-})
while [ $# -gt 0 ]; do
	case "$1" in
	--run) mode=run; suite=$2; shift 2 ;;
	--shell) mode=shell; suite=shell; shift ;;
	--disk) disk_size=$2; shift 2 ;;
	--name) name=$2; shift 2 ;;
	--rootfs) rootfs=1; shift ;;
	--env) guest_env+=("$2"); shift 2 ;;
	*) die "usage: $0 --run SUITE | --shell [--disk SIZE]" ;;
	esac
done
[ -n "$mode" ] || die "usage: $0 --run SUITE | --shell [--disk SIZE]"
name=${name:-$suite}
[ "$mode" = shell ] || [ -f "$LCFS_ROOT/tests/guest/$suite.sh" ] || die "no guest suite $suite"
[ "$mode" = shell ] || ! grep -q '^# lcfs-needs: debian-rootfs$' "$LCFS_ROOT/tests/guest/$suite.sh" || rootfs=1
[ "$mode" = shell ] || ! grep -q '^# lcfs-needs: debian-root$' "$LCFS_ROOT/tests/guest/$suite.sh" || rootfs=2
tools=0 vm_timeout=${LCFS_VM_TIMEOUT:-900}
if [ "$mode" = shell ]; then tools=1; else
	! grep -q '^# lcfs-needs: guest-tools' "$LCFS_ROOT/tests/guest/$suite.sh" || tools=1
	t=$(sed -n 's/^# lcfs-timeout: *\([0-9][0-9]*\).*/\1/p' "$LCFS_ROOT/tests/guest/$suite.sh" | sed -n 1p)
	vm_timeout=${LCFS_VM_TIMEOUT:-${t:-900}}
	[ -n "$disk_size" ] ||
		disk_size=$(sed -n 's/^# lcfs-disk: *\([0-9][0-9]*[KMG]\).*/\1/p' "$LCFS_ROOT/tests/guest/$suite.sh" | sed -n 1p)
fi
disk_size=${disk_size:-256M}
for e in ${guest_env[@]+"${guest_env[@]}"}; do
	[[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*$ ]] || die "--env wants NAME=VALUE without spaces: '$e'"
done

kdir=$(kernel_dir)
[ -f "$kdir/.lcfs-built" ] || die "$LCFS_KERNEL kernel not built (LCFS_KERNEL=$LCFS_KERNEL make kernel)"
kver=$(make -s -C "$kdir" kernelrelease)
build="${LCFS_VM_BUILD:-$LCFS_ROOT/build}"
mdir=$(module_dir)
[ -f "$mdir/lcfs.ko" ] || die "lcfs.ko not built for the $LCFS_KERNEL kernel (LCFS_KERNEL=$LCFS_KERNEL make module)"
[ -x "$build/guest/mkfs.lcfs" ] || die "guest tools not built (make guest-tools)"

# --- initramfs -------------------------------------------------------------------------------
root="$build/initramfs"
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,mnt,etc,root,tests}
cp /bin/busybox "$root/bin/busybox"
# The base kernel's module metadata (modules.builtin, ...), then lcfs.ko the way users install an
# out-of-tree module: modules_install into /lib/modules/<version>/updates and depmod.
make -s -C "$kdir" INSTALL_MOD_PATH="$root" modules_install >/dev/null
install_module "$kdir" "$mdir" "$root" >/dev/null 2>"$build/modules_install.err" ||
	{ cat "$build/modules_install.err" >&2; die "modules_install failed"; }
depmod -b "$root" "$kver"
grep -q 'alias fs-lcfs lcfs' "$root/lib/modules/$kver/modules.alias" || die "fs-lcfs alias missing"
install -m755 "$build"/guest/* "$root/bin/"
if [ "$tools" = 1 ]; then
	tooldir=$("$LCFS_ROOT/scripts/guest-tools.sh") || die "cannot build the guest test tools"
	install -m755 "$tooldir"/bin/* "$root/bin/"
fi
install -m755 "$LCFS_ROOT/tests/guest/init.sh" "$root/init"
# The suites and their data files (exception lists, tool configurations).
find "$LCFS_ROOT/tests/guest" -maxdepth 1 -type f -exec cp {} "$root/tests/" \;
# pjdfstest switches to the users nobody and tests, each with its own group.
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\ntests:x:1000:1000:pjdfstest:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\ntests:x:1000:\n' >"$root/etc/group"
if [ "$mode" = run ] && grep -q '^# lcfs-needs: conformance' "$LCFS_ROOT/tests/guest/$suite.sh"; then
	conformance=$("$LCFS_ROOT/scripts/build-go.sh" conformance) || die "cannot build the conformance suite"
	install -m755 "$conformance" "$root/bin/"
fi
if [ "$mode" = run ] && grep -q '^# lcfs-needs: churn' "$LCFS_ROOT/tests/guest/$suite.sh"; then
	churn=$("$LCFS_ROOT/scripts/build-go.sh" churn) || die "cannot build lcfs-churn"
	install -m755 "$churn" "$root/bin/"
fi
if [ "$mode" = run ] && grep -q '^# lcfs-needs: corrupt-images' "$LCFS_ROOT/tests/guest/$suite.sh"; then
	# Deterministic (seed, count): cargo rebuilds the generator only when it changed, and it
	# writes the images in about a second. The same tool, static for musl, exercises each
	# mounted mutant in the guest.
	(cd "$LCFS_ROOT/userspace" && cargo run --release --quiet -p lcfs-corrupt -- generate \
		--out "$build/corrupt" --count "${LCFS_CORRUPT_COUNT:-300}" --seed "${LCFS_CORRUPT_SEED:-1}" &&
		cargo build --release --quiet --target x86_64-unknown-linux-musl -p lcfs-corrupt) ||
		die "cannot generate the corrupted images"
	install -s -m755 "$LCFS_ROOT/userspace/target/x86_64-unknown-linux-musl/release/lcfs-corrupt" "$root/bin/"
	mkdir -p "$root/tests/corrupt"
	cp "$build"/corrupt/{base.img,blocks.bin,mutants.txt} "$root/tests/corrupt/"
fi
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$build/initramfs.cpio.gz"

# --- disks -----------------------------------------------------------------------------------
# vdb: a scratch disk, file-backed, recreated for every boot.
mkdir -p "$build/logs"
disk="$build/disk-$name.img"
rm -f "$disk"
truncate -s "$disk_size" "$disk"

# Test runs execute the module's KUnit suites at load (and only those); the demo and the shell
# skip KUnit to keep the console readable, and the suites booted into Debian (their module load
# would only repeat the KUnit results).
kunit="kunit.filter_glob=lcfs_*"
[ "$suite" = demo ] || [ "$mode" = shell ] || [ "$rootfs" = 2 ] && kunit="kunit.enable=0"
# kmemleak tracks every allocation (about a tenth of a suite's time under TCG); only a suite that
# scans for leaks, with a "# lcfs-needs: kmemleak" line, runs with it.
leaks=""
[ "$LCFS_KERNEL" != debug ] || grep -q '^# lcfs-needs: kmemleak$' "$LCFS_ROOT/tests/guest/$suite.sh" 2>/dev/null ||
	leaks="kmemleak=off "
# The demo's console carries kernel timestamps, so that its terminal view can tell the kernel's
# lines from the demo's own (demo_view below).
stamps=""
[ "$suite" != demo ] || stamps="printk.time=1 "
accel=tcg
[ "${LCFS_KVM:-0}" = 1 ] && accel=kvm
# The scratch disk. LCFS_DISK_IOTHREAD=1 (benchmarks of readers at once): its requests served by
# an I/O thread of their own, two queues, instead of QEMU's main loop, which serves one request
# at a time for every vCPU.
disk_opts=(-drive "file=$disk,if=virtio,format=raw,cache=unsafe")
[ "${LCFS_DISK_IOTHREAD:-0}" = 1 ] &&
	disk_opts=(-object iothread,id=io0 -drive "file=$disk,if=none,id=d0,format=raw,cache=unsafe,aio=threads"
		-device virtio-blk-pci,drive=d0,iothread=io0,num-queues=2)
# no5lvl: four-level paging. With QEMU's "max" CPU the kernel otherwise enables five levels, and
# twice in many runs an interrupt taken during early boot (identify_cpu) was reported by KASAN as a
# wild access to its descriptor's lock in the five-level direct map, before any module loaded.
# Two sockets, not two cores: the test kernel has no ACPI, and the firmware's MP table lists one
# CPU per socket, so "-smp 2" alone boots a single CPU.
qemu=(qemu-system-x86_64 -accel "$accel" -cpu max -smp 2,sockets=2 -m 2G -nographic -no-reboot
	-kernel "$kdir/arch/x86/boot/bzImage" -initrd "$build/initramfs.cpio.gz"
	"${disk_opts[@]}"
	-append "console=ttyS0 panic=-1 loglevel=7 kasan.fault=report no5lvl $stamps$leaks${LCFS_KERNEL_ARGS:-} $kunit lcfs_suite=$suite lcfs_rootfs=$rootfs${guest_env[*]:+ ${guest_env[*]}}")
if [ "$rootfs" != 0 ]; then
	# Read-only for the guest: writes go to a temporary overlay that QEMU discards.
	rootimg=$("$LCFS_ROOT/scripts/mkrootfs.sh") || die "cannot build the Debian root filesystem"
	qemu+=(-drive "file=$rootimg,if=virtio,format=raw,snapshot=on")
fi

if [ "$mode" = shell ]; then
	log "interactive guest (scratch disk /dev/vda, $disk_size$([ $rootfs = 1 ] && echo ', Debian tools under /debian')); leave with 'reboot -f'"
	exec "${qemu[@]}"
fi

logf="$build/logs/$name.log"
crash_bad=0
if grep -q '^# lcfs-needs: crash-kill' "$LCFS_ROOT/tests/guest/$suite.sh"; then
	# Rounds of two boots, the first killed on purpose; sets qrc and crash_bad, writes $logf.
	. "$LCFS_ROOT/scripts/vm-crash.sh"
else
log "booting guest for suite '$suite' ($LCFS_KERNEL kernel, $accel, log: ${logf#$LCFS_ROOT/})"
# The terminal's view of the demo (`make run`): its own output from its first line on, and the
# kernel's messages about lcfs; the whole console, boot included, goes to the log.
demo_view() {
	awk '/^\[ *[0-9]+\.[0-9]+\]/ { if (started && $0 ~ /lcfs/) print; fflush(); next }
		started { print; fflush(); next }
		/^LCFS-PLAN: demo/ { started = 1 }'
}
view=cat
[ "$suite" != demo ] || view=demo_view
start=$(date +%s)
set +e
timeout --foreground -k 10 "$vm_timeout" "${qemu[@]}" </dev/null 2>&1 | stdbuf -o0 tr -d '\r' | tee "$logf" | $view
qrc=${PIPESTATUS[0]}
set -e
log "guest finished in $(( $(date +%s) - start )) s (qemu status $qrc)"
fi

# --- verdict ---------------------------------------------------------------------------------
bad=$crash_bad
if ! grep -q '^LCFS-DONE' "$logf"; then
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		echo "VM-CHECK: guest hung (no completion within $vm_timeout s)"
	else
		echo "VM-CHECK: guest died before completing the suite"
	fi
	bad=1
fi
# The suite's plan, results and exit status (scripts/guest-results.awk): a planned test without a
# result, an unplanned or repeated one, or a non-zero exit status fails the run; a test that
# reported "not ok" is the caller's to count (scripts/test.sh), except for the demo, whose only
# result is the run itself.
while read -r what arg; do
	case "$what" in
	missing) echo "VM-CHECK: planned test $arg has no result (the suite stopped early)"; bad=1 ;;
	unplanned) echo "VM-CHECK: test $arg reported but not in the suite's plan"; bad=1 ;;
	twice) echo "VM-CHECK: test $arg reported more than once"; bad=1 ;;
	noplan) echo "VM-CHECK: the suite declared no plan (LCFS-PLAN)"; bad=1 ;;
	exit) echo "VM-CHECK: the suite script exited with status $arg"; bad=1 ;;
	fail) [ "$mode $suite" != "run demo" ] || { echo "VM-CHECK: $arg failed"; bad=1; } ;;
	esac
done < <(awk -f "$LCFS_ROOT/scripts/guest-results.awk" "$logf")
# Kernel problem reports. Test output lines are prefixed by LCFS- and never match.
pattern='WARNING:|BUG:|Oops|KASAN:|general protection fault|Kernel panic|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|INFO: task .* blocked|INFO: The task .* has been waiting for writeback|soft lockup|hard LOCKUP|UBSAN:|unreferenced object|Objects remaining|kernel BUG'
if grep -v '^LCFS-' "$logf" | grep -E -q "$pattern"; then
	echo "VM-CHECK: kernel problem reported:"
	grep -v '^LCFS-' "$logf" | grep -E "$pattern" | sed -n 1,20p | sed 's/^/    /'
	bad=1
fi
exit $bad
