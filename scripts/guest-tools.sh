#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Builds (once) static musl binaries of third-party test tools for the busybox guest and prints the
# directory that holds them (bin/pjdfstest, bin/fsx). vm.sh copies them into the initramfs for
# suites with a "# lcfs-needs: guest-tools" line (and for --shell).
#
#   pjdfstest  POSIX conformance suite (Rust rewrite of pjd's suite)
#   fsx        File System eXerciser: random reads, writes, mmap, truncates, verified
#
# Cached under $LCFS_CACHE/tools/guest-<key>, keyed by the pinned versions, the compiler and this
# script. Crates come from the registry by name (cargo install --locked: the crates' own lock files).
set -euo pipefail
. "$(dirname "$0")/env.sh"

PJDFSTEST_VERSION=0.2.2
FSX_VERSION=0.3.2
TARGET=x86_64-unknown-linux-musl

# Only the directory goes to stdout (callers capture it); everything else to stderr.
key=$( { echo "pjdfstest $PJDFSTEST_VERSION fsx $FSX_VERSION $TARGET"; rustc --version; cat "$0"; } |
	sha256sum | cut -c1-12)
dir="$LCFS_CACHE/tools/guest-$key"
if [ -f "$dir/.done" ]; then echo "$dir"; exit 0; fi

targets=$(rustup target list --installed)
[[ $'\n'$targets$'\n' == *$'\n'$TARGET$'\n'* ]] || { log "adding $TARGET target"; rustup target add "$TARGET" >&2; }

log "building guest test tools: pjdfstest $PJDFSTEST_VERSION, fsx $FSX_VERSION (static, $TARGET)"
start=$(date +%s)
rm -rf "$dir"
mkdir -p "$dir"
for crate in "pjdfstest $PJDFSTEST_VERSION" "fsx $FSX_VERSION"; do
	set -- $crate
	cargo install --locked --quiet --target "$TARGET" --root "$dir" "$1" --version "$2" >&2
done
for b in pjdfstest fsx; do
	[ -x "$dir/bin/$b" ] || die "$b was not installed"
	# Static: the guest has no shared libraries.
	if file "$dir/bin/$b" 2>/dev/null | grep -q 'dynamically linked'; then die "$b is not static"; fi
	strip "$dir/bin/$b" 2>/dev/null || true
done
rm -f "$dir/.crates.toml" "$dir/.crates2.json"
{
	echo "pjdfstest $PJDFSTEST_VERSION"
	echo "fsx $FSX_VERSION"
	rustc --version
} >"$dir/versions.txt"
touch "$dir/.done"
log "guest test tools built in $(( $(date +%s) - start )) s: $dir"
echo "$dir"
