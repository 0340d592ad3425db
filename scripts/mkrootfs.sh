#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Builds (once) a Debian bookworm root filesystem image with the userland tools that guest tests
# need beyond busybox, and prints its path. The VM harness attaches it in QEMU's snapshot mode
# (the guest's writes go to a temporary file and are dropped) as /dev/vdb; the guest runs its
# tools with chroot, or boots into it as its root for the container suites (tests/guest/init.sh).
#
# It also holds the container images of the containerd suites under /images, OCI archives for
# `ctr image import` built here from Debian packages and busybox (there is no registry to pull
# from; scripts/oci-image.py):
#   busybox.tar  localhost/lcfs-test/busybox:1, one layer: the host's static busybox
#   debian.tar   localhost/lcfs-test/debian:bookworm, two layers: Debian minbase (about 170 MB,
#                8,700 entries), then a small layer that adds, replaces and deletes (a whiteout);
#                the containerd benchmark's image
#   debian-slim.tar  localhost/lcfs-test/debian-slim:bookworm, the same second layer on Debian's
#                shell, coreutils, grep and diffutils with their dependencies, unpacked without
#                running their scripts (about 50 MB, 1,500 entries): the containerd suites' image,
#                a quarter of the work to import under TCG
#
# The image is cached under $LCFS_CACHE/guest, keyed by the package list and this script.
set -euo pipefail
. "$(dirname "$0")/env.sh"

SUITE=bookworm
PACKAGES=(fio stress-ng e2fsprogs xfsprogs attr acl btrfs-progs containerd runc)

# Only the image path goes to stdout (callers capture it); everything else to stderr.
key=$( { echo "$SUITE ${PACKAGES[*]}"; cat "$0" "$LCFS_ROOT/scripts/oci-image.py"; sha256sum /bin/busybox; } |
	sha256sum | cut -c1-12)
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

# The container images.
work="$LCFS_CACHE/guest/images-$key"
rm -rf "$work"
mkdir -p "$work/busybox/bin" "$work/busybox"/{etc,tmp,root,proc,sys,dev} "$work/change/etc" "$dir/images"
cp /bin/busybox "$work/busybox/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$work/busybox/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/busybox/etc/passwd"
tar -C "$work/busybox" --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -cf "$work/busybox.tar" .
python3 "$LCFS_ROOT/scripts/oci-image.py" --name localhost/lcfs-test/busybox:1 --out "$dir/images/busybox.tar" \
	"$work/busybox.tar"
mmdebstrap --quiet --variant=minbase "$SUITE" "$work/base.tar" "deb $(mirror_uri) $SUITE main" >&2
mmdebstrap --quiet --variant=extract --include=base-files,base-passwd,dash,grep,coreutils,diffutils \
	"$SUITE" "$work/slim" "deb $(mirror_uri) $SUITE main" >&2
# What base-passwd's script would have made.
cp "$work/slim/usr/share/base-passwd/passwd.master" "$work/slim/etc/passwd"
cp "$work/slim/usr/share/base-passwd/group.master" "$work/slim/etc/group"
tar -C "$work/slim" --numeric-owner --sort=name -cf "$work/slim.tar" .
# The second layer: a new file, a replaced file, and a deleted directory (whiteout) that both
# bases have.
echo "lcfs test image, layer 2" >"$work/change/etc/lcfs-image"
echo "replaced by layer 2" >"$work/change/etc/motd"
mkdir -p "$work/change/usr/share/doc"
: >"$work/change/usr/share/doc/.wh.tar"
tar -C "$work/change" --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -cf "$work/change.tar" .
python3 "$LCFS_ROOT/scripts/oci-image.py" --name localhost/lcfs-test/debian:bookworm --out "$dir/images/debian.tar" \
	"$work/base.tar" "$work/change.tar"
python3 "$LCFS_ROOT/scripts/oci-image.py" --name localhost/lcfs-test/debian-slim:bookworm \
	--out "$dir/images/debian-slim.tar" "$work/slim.tar" "$work/change.tar"
rm -rf "$work"
# Sparse image with room to spare: a guest that boots into it keeps containerd's content store
# and its built-in snapshotters' data on it (the writes are dropped at power-off).
size_mb=$(( $(du -sm "$dir" | cut -f1) * 3 / 2 + 3072 ))
mkfs.ext4 -q -F -L lcfs-debian -d "$dir" "$img" "${size_mb}M" >&2
rm -rf "$dir"
touch "$img.done"
log "root filesystem built in $(( $(date +%s) - start )) s: $img"
echo "$img"
