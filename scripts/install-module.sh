#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The module's install targets (Makefile); DESTDIR, when set, is a staging root.
#
#   install-module.sh              (make install-module) lcfs.ko as `make module` built it for the
#                                  LCFS_KERNEL kernel, through that kernel's modules_install, into
#                                  $DESTDIR/lib/modules/<version>/updates/, as vm.sh puts it in the
#                                  guest; then depmod, unless DESTDIR is set
#   install-module.sh --uninstall  (make uninstall-module) removes it, then depmod likewise
#   install-module.sh --dkms       (make install-dkms) dkms.conf and the module's sources into
#                                  $DESTDIR$DKMSDIR/lcfs-VERSION, for DKMS to build per kernel
#
# Nothing is built: a kernel or module build is no install step (and not one to run as root in
# the tree by surprise). In a staging root depmod is left out: the module indexes there would
# hold lcfs alone and replace the target system's; its package's postinst runs depmod.
set -euo pipefail
. "$(dirname "$0")/env.sh"

DESTDIR=${DESTDIR:-}
PATH=$PATH:/usr/sbin:/sbin # modinfo and depmod, for users whose PATH lacks them
mode=${1:-install}

if [ "$mode" = --dkms ]; then
	# The tree DKMS copies and builds with `make -C <kernel build> M=...`: the top-level Kbuild,
	# the sources it names and dkms.conf, whose version must be the tools'.
	version=$(awk -F'"' '/^version = /{ print $2; exit }' "$LCFS_ROOT/userspace/Cargo.toml")
	conf_version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' "$LCFS_ROOT/dkms.conf")
	[ "$version" = "$conf_version" ] ||
		die "dkms.conf has PACKAGE_VERSION $conf_version, userspace/Cargo.toml version $version"
	dest="$DESTDIR${DKMSDIR:-/usr/local/src}/lcfs-$version"
	mkdir -p "$dest"
	copy_module_sources "$dest"
	install -m 644 "$LCFS_ROOT/dkms.conf" "$dest/"
	exit 0
fi

kdir=$(kernel_dir)
[ -f "$kdir/.lcfs-built" ] || die "the $LCFS_KERNEL kernel is not built (make module, LCFS_KERNEL=$LCFS_KERNEL)"
kver=$(make -s -C "$kdir" kernelrelease)
case "$mode" in
install)
	mdir=$(module_dir)
	[ -f "$mdir/lcfs.ko" ] || die "lcfs.ko is not built for the $LCFS_KERNEL kernel (make module, LCFS_KERNEL=$LCFS_KERNEL)"
	vermagic=$(modinfo -F vermagic "$mdir/lcfs.ko")
	[ "${vermagic%% *}" = "$kver" ] || die "$mdir/lcfs.ko is built for ${vermagic%% *}, the $LCFS_KERNEL kernel is $kver"
	# The kernel's depmod.sh runs $DEPMOD.
	[ -z "$DESTDIR" ] || export DEPMOD=true
	install_module "$kdir" "$mdir" "$DESTDIR"
	echo "installed $DESTDIR/lib/modules/$kver/updates/lcfs.ko" >&2
	;;
--uninstall)
	rm -f "$DESTDIR/lib/modules/$kver/updates/lcfs.ko"
	[ -n "$DESTDIR" ] || depmod -a "$kver"
	;;
*) die "usage: $0 [--uninstall | --dkms]" ;;
esac
