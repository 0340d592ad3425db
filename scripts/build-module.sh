#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Builds lcfs.ko for the selected guest kernel (LCFS_KERNEL=debug|release, scripts/env.sh) and
# prints the directory holding it. The debug kernel's module is built in the tree, with the
# kernel's clippy run; the release kernel's from a copy of the module sources (module_dir), so
# the two builds never share objects.
set -euo pipefail
. "$(dirname "$0")/env.sh"

kdir=$("$LCFS_ROOT/scripts/build-kernel.sh")
mdir=$(module_dir)
lint=(CLIPPY=1)
if [ "$mdir" != "$LCFS_ROOT" ]; then
	# rsync -a keeps mtimes, so Kbuild rebuilds only what changed. Only sources are copied (the
	# first matching rule wins); with --delete a removed source goes away, while the excluded
	# build products are left alone.
	mkdir -p "$mdir"
	rsync -a --delete --exclude='*_generated.rs' --include='*/' --include='Kbuild' \
		--include='*.rs' --include='*.c' --include='*.h' --exclude='*' \
		"$LCFS_ROOT/Kbuild" "$LCFS_ROOT/src" "$LCFS_ROOT/include" "$mdir/"
	lint=() # the same sources are linted by the debug build
fi
make -s -C "$kdir" LLVM="$LCFS_LLVM_SUFFIX" "${lint[@]}" M="$mdir" modules >&2
echo "$mdir"
