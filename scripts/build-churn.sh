#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Builds (once) lcfs-churn, the snapshotter level of the containerd benchmark
# (tests/containerd/churn: a static Go client of containerd's snapshots and leases services), and
# prints the binary's path; logs go to stderr. Like scripts/build-conformance.sh: Debian's Go and
# containerd 1.6 sources under /usr/share/gocode, GOPATH mode, no downloads.
#
# Cached under $LCFS_CACHE/tools/churn-<key>, keyed by the Go version, the installed golang-*-dev
# packages, the sources and this script; Go's build cache ($LCFS_CACHE/tools/go-build) is the
# conformance suite's, which already holds most of the dependencies.
set -euo pipefail
. "$(dirname "$0")/env.sh"

SRC="$LCFS_ROOT/tests/containerd/churn"
GOCODE=/usr/share/gocode
NAME=lcfs-churn

command -v go >/dev/null || die "go not found: run scripts/setup.sh (Debian's golang-go)"
[ -d "$GOCODE/src/github.com/containerd/containerd/snapshots/proxy" ] ||
	die "containerd's sources not found: run scripts/setup.sh (golang-github-containerd-containerd-dev)"

# Only the path goes to stdout (callers capture it); everything else to stderr.
key=$( {
	go version
	dpkg-query -W -f='${Package} ${Version}\n' 'golang-*-dev'
	(cd "$SRC" && find . -type f | LC_ALL=C sort | xargs sha256sum)
	cat "$0"
} | sha256sum | cut -c1-12)
dir="$LCFS_CACHE/tools/churn-$key"
if [ -f "$dir/.done" ]; then echo "$dir/$NAME"; exit 0; fi

log "building $NAME ($(go version | cut -d' ' -f3), static)"
start=$(date +%s)
rm -rf "$dir"
mkdir -p "$dir"
# Static (no cgo), like every tool the initramfs carries into the guest; -trimpath keeps the
# build paths out of the binary; -s -w drops the symbol table and DWARF.
(cd "$SRC" && env CGO_ENABLED=0 GO111MODULE=off GOPATH="$GOCODE" GOFLAGS=-buildvcs=false \
	GOCACHE="$LCFS_CACHE/tools/go-build" \
	go build -trimpath -ldflags='-s -w' -o "$dir/$NAME.tmp" .) >&2 || die "go build failed"
[[ $(file "$dir/$NAME.tmp") == *'statically linked'* ]] || die "$NAME is not static: $(file "$dir/$NAME.tmp")"
mv "$dir/$NAME.tmp" "$dir/$NAME"
touch "$dir/.done"
log "$NAME built in $(( $(date +%s) - start )) s: $dir/$NAME"
echo "$dir/$NAME"
