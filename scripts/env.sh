# SPDX-License-Identifier: GPL-2.0
# Shared settings for the LCFS scripts; sourced, never run.
#
# Everything built outside the repository (toolchain helpers, kernel source, kernel builds, guest
# images) lives under LCFS_CACHE so fresh clones and CI on the same machine reuse it.

LCFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LCFS_CACHE=${LCFS_CACHE:-/var/cache/lcfs}
LCFS_KERNEL_SERIES=7.3
LCFS_BINDGEN_VERSION=0.73.2
LCFS_LLVM_SUFFIX=-19
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm${LCFS_LLVM_SUFFIX}/lib}
# Cargo's intermediate artifacts: shared by clones (the binaries stay in each userspace/target).
export CARGO_BUILD_BUILD_DIR=${CARGO_BUILD_BUILD_DIR:-$LCFS_CACHE/cargo-build}
export PATH="$LCFS_CACHE/tools/bin:$HOME/.cargo/bin:$PATH"

log() { printf '[lcfs %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[lcfs] error: %s\n' "$*" >&2; exit 1; }

# Which guest kernel: "debug" (the test kernel: KASAN, lockdep, kmemleak) or "release" (no
# debugging instrumentation; long fsx runs and benchmarks). kernel/lcfs.config + kernel/$LCFS_KERNEL.config.
LCFS_KERNEL=${LCFS_KERNEL:-debug}
case "$LCFS_KERNEL" in debug | release) ;; *) die "LCFS_KERNEL must be debug or release, not '$LCFS_KERNEL'" ;; esac

kernel_fragments() { echo "$LCFS_ROOT/kernel/lcfs.config" "$LCFS_ROOT/kernel/$LCFS_KERNEL.config"; }

# The kernel build directory is keyed by the kernel source version, the config fragments and the
# compilers: modules must be built with the exact rustc that built the kernel's rust/ crates.
kernel_key() {
	local ver
	ver=$(cat "$LCFS_CACHE/src/linux-source-version" 2>/dev/null) || die "kernel source missing: run scripts/setup.sh"
	{
		echo "$ver"
		cat $(kernel_fragments)
		rustc --version
		"clang$LCFS_LLVM_SUFFIX" --version | sed -n 1p
		bindgen --version
	} | sha256sum | cut -c1-12 | sed "s/^/$ver-/"
}

kernel_dir() {
	if [ -n "${LCFS_KDIR:-}" ]; then echo "$LCFS_KDIR"; return; fi
	echo "$LCFS_CACHE/kernel/$(kernel_key)"
}

# Where lcfs.ko is built for the selected kernel. The debug kernel's module is built in the tree
# (M=$LCFS_ROOT, as `make module` always did); the release kernel's from a copy of the module
# sources under build/, because Kbuild writes objects next to the sources and the generated
# bindings are include!d by path.
module_dir() {
	if [ "$LCFS_KERNEL" = debug ]; then echo "$LCFS_ROOT"; else echo "$LCFS_ROOT/build/module-$LCFS_KERNEL"; fi
}

# The module's sources, what Kbuild reads (Kbuild, src/, include/), copied into DIR: for the
# release kernel's build (build-module.sh) and the DKMS source tree (make install-dkms). rsync -a
# keeps mtimes, so Kbuild rebuilds only what changed. Only sources are copied (the first matching
# rule wins); with --delete a removed source goes away, while the excluded build products are left
# alone.
copy_module_sources() { # copy_module_sources DIR
	rsync -a --delete --exclude='*_generated.rs' --include='*/' --include='Kbuild' \
		--include='*.rs' --include='*.c' --include='*.h' --exclude='*' \
		"$LCFS_ROOT/Kbuild" "$LCFS_ROOT/src" "$LCFS_ROOT/include" "$1/"
}

# Installs the lcfs.ko built in MDIR for the kernel build KDIR the way users install an
# out-of-tree module: the kernel's modules_install, into ROOT/lib/modules/<version>/updates/ (no
# ROOT: the running system), then the kernel's depmod (DEPMOD=true in the environment skips it).
# For the guest's initramfs (vm.sh) and make install-module alike.
install_module() { # install_module KDIR MDIR [ROOT]
	make -s -C "$1" LLVM="$LCFS_LLVM_SUFFIX" M="$2" INSTALL_MOD_PATH="${3:-}" INSTALL_MOD_DIR=updates \
		modules_install
}

# The Debian mirror this machine's apt uses (deb822 or one-line sources), never a hard-coded host.
mirror_uri() {
	local uri=""
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
		uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	fi
	[ -n "$uri" ] || die "cannot find the Debian mirror in the apt configuration"
	echo "$uri"
}
