#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Installs everything LCFS needs on a fresh Debian 12 x86_64 machine (run as root). Idempotent:
# each step checks whether its result is already there. Versions used go to $LCFS_CACHE/versions.txt.
set -euo pipefail
. "$(dirname "$0")/env.sh"

APT_PACKAGES=(
	clang-19 lld-19 llvm-19 libclang-19-dev	# kernel + Rust build (LLVM=-19), bindgen's libclang
	flex bison bc libelf-dev libssl-dev cpio kmod rsync xz-utils
	busybox-static qemu-system-x86		# guest userland and the VM
	mmdebstrap				# Debian root filesystem for guest tools (scripts/mkrootfs.sh)
	e2fsprogs				# ext4 baseline in later benchmarks
	protobuf-compiler			# protoc: containerd's gRPC API in lcfs-snapshotter (tonic-build)
	golang-go golang-github-containerd-containerd-dev	# containerd's snapshotter suite (scripts/build-go.sh conformance)
	file					# checks that guest binaries are static
	gnuplot-nox				# the containerd benchmark's chart (scripts/containerdbench.sh)
	man-db groff-base dkms systemd		# scripts/install-check.sh: lexgrog, groff, dkms, systemd-analyze
)

[ "$(id -u)" = 0 ] || die "setup needs root (it installs Debian packages)"
mkdir -p "$LCFS_CACHE"/{src,tools,kernel,guest}

missing=()
for p in "${APT_PACKAGES[@]}"; do
	case "$p" in '#'*) continue ;; esac
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust pieces: the kernel needs the standard library sources of the exact toolchain in use; the guest
# tools are static musl binaries so they run in a busybox initramfs without shared libraries.
# (Output is captured before matching: `grep -q` in a pipeline fails under pipefail by SIGPIPE.)
components=$(rustup component list --installed)
[[ $'\n'$components == *$'\n'rust-src* ]] || { log "adding rust-src"; rustup component add rust-src; }
targets=$(rustup target list --installed)
[[ $'\n'$targets$'\n' == *$'\n'x86_64-unknown-linux-musl$'\n'* ]] ||
	{ log "adding musl target"; rustup target add x86_64-unknown-linux-musl; }
if [[ $(bindgen --version 2>/dev/null) != *" $LCFS_BINDGEN_VERSION" ]]; then
	log "installing bindgen-cli $LCFS_BINDGEN_VERSION"
	cargo install --locked --quiet --root "$LCFS_CACHE/tools" bindgen-cli --version "$LCFS_BINDGEN_VERSION"
fi
# Third-party guest test tools (pjdfstest, fsx) for the posix suite: static musl builds, cached.
guest_tools=$("$LCFS_ROOT/scripts/guest-tools.sh")

# Kernel source from Debian's linux-source-7.3 (trixie-backports). The mirror is the one this
# machine's apt already uses (mirror_uri, env.sh); we only add the suite, in a private apt state
# directory.
if [ ! -f "$LCFS_CACHE/src/linux-source-version" ]; then
	uri=$(mirror_uri)
	work="$LCFS_CACHE/src/apt"
	rm -rf "$work"; mkdir -p "$work/lists/partial" "$work/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie-backports main" >"$work/sources.list"
	aptopts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o Dir::State::Lists="$work/lists" -o Dir::Cache::Archives="$work/archives"
		-o Dir::Cache::pkgcache="" -o Dir::Cache::srcpkgcache="" -o APT::Sandbox::User=root)
	log "fetching linux-source-$LCFS_KERNEL_SERIES index (trixie-backports)"
	apt-get "${aptopts[@]}" update -qq
	(cd "$work" && apt-get "${aptopts[@]}" download "linux-source-$LCFS_KERNEL_SERIES")
	deb=$(ls "$work"/linux-source-"$LCFS_KERNEL_SERIES"_*.deb | sed -n 1p)
	pkgver=$(dpkg-deb -f "$deb" Version)
	log "extracting $deb"
	rm -rf "$work/x"; mkdir -p "$work/x"
	dpkg-deb -x "$deb" "$work/x"
	mv "$work/x/usr/src/linux-source-$LCFS_KERNEL_SERIES.tar.xz" "$LCFS_CACHE/src/linux.tar.xz"
	rm -rf "$work"
	echo "$pkgver" >"$LCFS_CACHE/src/linux-source-version"
fi

{
	echo "linux-source-$LCFS_KERNEL_SERIES: $(cat "$LCFS_CACHE/src/linux-source-version")"
	rustc --version
	cargo --version
	bindgen --version
	"clang$LCFS_LLVM_SUFFIX" --version | sed -n 1p
	"ld.lld$LCFS_LLVM_SUFFIX" --version | sed -n 1p
	qemu-system-x86_64 --version | sed -n 1p
	busybox | sed -n 1p
	go version
	echo "containerd (Go sources): $(dpkg-query -W -f='${Version}' golang-github-containerd-containerd-dev)"
	sed -n '1,2p' "$guest_tools/versions.txt"
} >"$LCFS_CACHE/versions.txt"
[ -n "${LCFS_QUIET:-}" ] || { log "toolchain ready:"; sed 's/^/    /' "$LCFS_CACHE/versions.txt" >&2; }
