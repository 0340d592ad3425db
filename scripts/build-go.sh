#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Builds (once) one of the project's static Go programs for the guest and prints the binary's path;
# logs go to stderr.
#
#   bin=$(scripts/build-go.sh conformance)   lcfs-snapshot-conformance (tests/containerd/conformance):
#       a test binary running containerd's own snapshotter test suite against
#       containerd-lcfs-grpc and, as the reference, containerd's overlayfs snapshotter. As root
#       where lcfs.ko, mkfs.lcfs and containerd-lcfs-grpc are at hand (the guest):
#         sh /tests/gotest-results.sh -k /tests/containerd-conformance.skips containerd-conformance \
#             lcfs-snapshot-conformance -test.v -test.timeout 30m
#   bin=$(scripts/build-go.sh churn)         lcfs-churn (tests/containerd/churn): the snapshotter
#       level of the containerd benchmark, a client of containerd's snapshots and leases services.
#
# The sources are Debian's: golang-go and golang-github-containerd-containerd-dev (containerd
# 1.6, with snapshots/testsuite) and the Go libraries it depends on, all under /usr/share/gocode,
# built in GOPATH mode (no modules, no downloads); scripts/setup.sh installs them.
#
# Cached under $LCFS_CACHE/tools/<program>-<key>, keyed by the Go version, the versions of the
# installed golang-*-dev packages (containerd's and its dependencies'), the program's sources and
# this script. Go's build cache is shared, in $LCFS_CACHE/tools/go-build, so a change of our
# sources rebuilds in seconds.
set -euo pipefail
. "$(dirname "$0")/env.sh"

GOCODE=/usr/share/gocode
case "${1:-}" in
conformance) NAME=lcfs-snapshot-conformance verb="test -c" needs=snapshots/testsuite ;;
churn) NAME=lcfs-churn verb=build needs=snapshots/proxy ;;
*) die "usage: build-go.sh conformance|churn" ;;
esac
SRC="$LCFS_ROOT/tests/containerd/$1"

command -v go >/dev/null || die "go not found: run scripts/setup.sh (Debian's golang-go)"
[ -d "$GOCODE/src/github.com/containerd/containerd/$needs" ] ||
	die "containerd's sources not found: run scripts/setup.sh (golang-github-containerd-containerd-dev)"

# Only the path goes to stdout (callers capture it); everything else to stderr.
key=$( {
	go version
	dpkg-query -W -f='${Package} ${Version}\n' 'golang-*-dev'
	(cd "$SRC" && find . -type f | LC_ALL=C sort | xargs sha256sum)
	cat "$0"
} | sha256sum | cut -c1-12)
dir="$LCFS_CACHE/tools/$1-$key"
if [ -f "$dir/.done" ]; then echo "$dir/$NAME"; exit 0; fi

log "building $NAME (containerd $(dpkg-query -W -f='${Version}' golang-github-containerd-containerd-dev) sources, $(go version | cut -d' ' -f3), static)"
start=$(date +%s)
rm -rf "$dir"
mkdir -p "$dir"
# GOPATH mode: our package builds where it is (as "_/..."), its imports come from Debian's tree.
# Static (no cgo) for the busybox guest; -trimpath keeps the build paths out of the binary; -s -w
# drops the symbol table and DWARF (panics still name functions and lines).
# shellcheck disable=SC2086 # $verb is two words for the test binary
(cd "$SRC" && env CGO_ENABLED=0 GO111MODULE=off GOPATH="$GOCODE" GOFLAGS=-buildvcs=false \
	GOCACHE="$LCFS_CACHE/tools/go-build" \
	go $verb -trimpath -ldflags='-s -w' -o "$dir/$NAME.tmp" .) >&2 || die "go $verb failed"
# Static: the guest has no shared libraries.
[[ $(file "$dir/$NAME.tmp") == *'statically linked'* ]] || die "$NAME is not static: $(file "$dir/$NAME.tmp")"
mv "$dir/$NAME.tmp" "$dir/$NAME"
{
	go version
	dpkg-query -W -f='${Package} ${Version}\n' golang-github-containerd-containerd-dev
} >"$dir/versions.txt"
touch "$dir/.done"
log "$NAME built in $(( $(date +%s) - start )) s: $dir/$NAME"
echo "$dir/$NAME"
