#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Builds a guest kernel (tinyconfig + kernel/lcfs.config + kernel/$LCFS_KERNEL.config, clang 19 +
# rustc) into the cache, unless a build with the same key is already there. Prints the kernel
# directory on stdout. LCFS_KERNEL: debug (default, the test kernel) or release.
set -euo pipefail
. "$(dirname "$0")/env.sh"

kdir=$(kernel_dir)
if [ -f "$kdir/.lcfs-built" ]; then echo "$kdir"; exit 0; fi
# One build per directory at a time: a second caller (make test and make module at once) waits
# for the first and then finds the build finished, instead of deleting the tree being built.
mkdir -p "$(dirname "$kdir")"
exec 9>"$kdir.lock"
flock 9
if [ -f "$kdir/.lcfs-built" ]; then echo "$kdir"; exit 0; fi
[ -z "${LCFS_KDIR:-}" ] || die "LCFS_KDIR=$LCFS_KDIR is not a finished LCFS kernel build"

log "building $LCFS_KERNEL kernel in $kdir (about 10 minutes on 2 cores)"
start=$(date +%s)
# Built in place (paths inside a kernel tree are absolute); the marker file says it is complete.
rm -rf "$kdir"; mkdir -p "$kdir"
tar -xJf "$LCFS_CACHE/src/linux.tar.xz" -C "$kdir" --strip-components=1
cd "$kdir"
mk=(make -s LLVM="$LCFS_LLVM_SUFFIX" -j"$(nproc)")
"${mk[@]}" tinyconfig >/dev/null
"${mk[@]}" rustavailable >/dev/null || die "Rust toolchain not usable for this kernel (make rustavailable)"
scripts/kconfig/merge_config.sh -m .config $(kernel_fragments) >/dev/null
"${mk[@]}" olddefconfig >/dev/null

# merge_config silently drops options whose dependencies are unmet: check every one we asked for.
bad=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=n) want="# ${line%=n} is not set" ;; CONFIG_*) want="$line" ;; *) continue ;; esac
	grep -qxF "$want" .config || { echo "missing from .config: $line" >&2; bad=1; }
done < <(cat $(kernel_fragments))
[ $bad = 0 ] || die "kernel config fragment not satisfied"

# vmlinux/all, not just bzImage: Module.symvers comes from the full build.
"${mk[@]}" all
cd - >/dev/null
echo "built in $(( $(date +%s) - start )) s" >"$kdir/.lcfs-built"
log "kernel built in $(( $(date +%s) - start )) s"
echo "$kdir"
