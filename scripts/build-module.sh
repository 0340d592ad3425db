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
	mkdir -p "$mdir"
	copy_module_sources "$mdir"
	lint=() # the same sources are linted by the debug build
fi
make -s -C "$kdir" LLVM="$LCFS_LLVM_SUFFIX" "${lint[@]}" M="$mdir" modules >&2
echo "$mdir"
