#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Builds (once) a Debian bookworm root filesystem image with the userland tools that guest tests
# need beyond busybox, and prints its path. The VM harness attaches it read-only (QEMU snapshot
# mode) as /dev/vdb and the guest runs its tools with chroot (see tests/guest/init.sh).
#
# The image is cached under $LCFS_CACHE/guest, keyed by the package list and this script.
set -euo pipefail
. "$(dirname "$0")/env.sh"

SUITE=bookworm
PACKAGES=(fio stress-ng e2fsprogs xfsprogs attr btrfs-progs)

# Only the image path goes to stdout (callers capture it); everything else to stderr.
key=$( { echo "$SUITE ${PACKAGES[*]}"; cat "$0"; } | sha256sum | cut -c1-12)
img="$LCFS_CACHE/guest/debian-$SUITE-$key.img"
if [ -f "$img.done" ]; then echo "$img"; exit 0; fi

command -v mmdebstrap >/dev/null || die "mmdebstrap missing: run scripts/setup.sh"
log "building Debian $SUITE root filesystem (${PACKAGES[*]})"
start=$(date +%s)
mkdir -p "$LCFS_CACHE/guest"
dir="$LCFS_CACHE/guest/rootfs-$key"
rm -rf "$dir" "$img"
include=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --quiet --variant=minbase --include="$include" "$SUITE" "$dir" \
	"deb $(mirror_uri) $SUITE main" >&2
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
# Sparse image, sized with room to spare; the guest never writes to it (snapshot mode).
size_mb=$(( $(du -sm "$dir" | cut -f1) * 3 / 2 + 256 ))
mkfs.ext4 -q -F -L lcfs-debian -d "$dir" "$img" "${size_mb}M" >&2
rm -rf "$dir"
touch "$img.done"
log "root filesystem built in $(( $(date +%s) - start )) s: $img"
echo "$img"
