#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Checks of the install targets (Makefile, "installation") in scratch DESTDIRs: make install puts
# every file in its place with its mode, and nothing else; the installed tools run, also as
# mkfs -t lcfs and fsck -t lcfs; the man pages format cleanly and name their tools; the
# completions load; the unit verifies; the directory variables are followed and no root is needed;
# an edited configuration is kept; uninstall leaves nothing; the module goes in through
# modules_install, and DKMS builds it from the tree install-dkms installs. Needs lcfs.ko built
# (make module; scripts/test.sh runs this after it). Prints one "ok|not ok install: NAME" line per
# check (scripts/test.sh counts them); details of a failure go to stderr.
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$LCFS_ROOT"
PATH=$PATH:/usr/sbin:/sbin # modinfo, depmod, dkms, setpriv for users whose PATH lacks them

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # the unprivileged install's DESTDIR is inside
fail_log="$tmp/fail.log"

# check NAME FUNCTION: ok when FUNCTION succeeds; otherwise its output goes to stderr.
check() {
	if "$2" >"$fail_log" 2>&1; then
		echo "ok install: $1"
	else
		echo "not ok install: $1"
		sed 's/^/    /' "$fail_log" | sed -n 1,40p >&2
	fi
}

version=$(awk -F'"' '/^version = /{ print $2; exit }' userspace/Cargo.toml)
tools="mkfs.lcfs fsck.lcfs lcfs containerd-lcfs-grpc"
d="$tmp/root"

# The files of make install with the default directories, "MODE PATH" relative to DESTDIR.
expected_files() {
	local t p
	printf '755 usr/local/sbin/%s\n' mkfs.lcfs fsck.lcfs
	printf '755 usr/local/bin/%s\n' lcfs containerd-lcfs-grpc
	# Every page lcfs-gen wrote (one per lcfs subcommand too), and at least the tools'.
	for p in $tools $(cd build/man && ls -- *.8 | sed 's/\.8$//'); do
		echo "644 usr/local/share/man/man8/$p.8"
	done
	for t in $tools; do
		echo "644 usr/local/share/bash-completion/completions/$t"
		echo "644 usr/local/share/zsh/site-functions/_$t"
		echo "644 usr/local/share/fish/vendor_completions.d/$t.fish"
	done
	echo "644 usr/local/lib/systemd/system/containerd-lcfs-grpc.service"
	echo "644 etc/containerd-lcfs/config.toml"
	echo "644 usr/local/share/doc/lcfs/containerd-config.toml"
}

# Files (and symbolic links) under a directory, "MODE PATH".
files_under() { (cd "$1" && find . \( -type f -o -type l \) -printf '%m %P\n'); }

install_default() { make -s install DESTDIR="$d"; }

files_and_modes() {
	diff -u <(expected_files | sort -u) <(files_under "$d" | sort)
}

tools_run() {
	local t out
	for t in usr/local/sbin/mkfs.lcfs usr/local/sbin/fsck.lcfs usr/local/bin/lcfs usr/local/bin/containerd-lcfs-grpc; do
		out=$("$d/$t" --version) || return
		[ "$out" = "${t##*/} $version" ] || { echo "$t --version: '$out', not '${t##*/} $version'"; return 1; }
	done
}

# mkfs(8) and fsck(8) find mkfs.lcfs and fsck.lcfs in PATH (after /sbin): format an image file
# and check it through them.
mkfs_fsck_find_tools() {
	local img="$tmp/fs.img" sbin="$d/usr/local/sbin"
	truncate -s 64M "$img"
	PATH="$sbin:$PATH" mkfs -t lcfs "$img" || return
	PATH="$sbin:$PATH" fsck -t lcfs "$img" || return
	PATH="$sbin:$PATH" fsck -N -t lcfs "$img" | grep -F "[$sbin/fsck.lcfs "
}

man_pages_format() {
	local p out bad=0
	for p in "$d"/usr/local/share/man/man8/*.8; do
		out=$(groff -man -z -ww "$p" 2>&1) # -ww: every warning; -wall leaves out undefined macros
		[ -z "$out" ] || { echo "${p##*/}: $out"; bad=1; }
	done
	return $bad
}

# The NAME lines, as mandb reads them for whatis and apropos: each page's own name, and for each
# tool the summary its -h gives.
man_pages_named() {
	local p name entry t bin summary
	for p in "$d"/usr/local/share/man/man8/*.8; do
		name=${p##*/} name=${name%.8}
		entry=$(lexgrog "$p") || { echo "lexgrog cannot parse ${p##*/}"; return 1; }
		[[ $entry == *": \"$name - "* ]] || { echo "$entry"; return 1; }
	done
	for t in $tools; do
		bin=$(ls "$d"/usr/local/*bin/"$t")
		summary=$("$bin" -h | sed -n 1p)
		entry=$(lexgrog "$d/usr/local/share/man/man8/$t.8")
		[ "$entry" = "$d/usr/local/share/man/man8/$t.8: \"$t - $summary\"" ] ||
			{ echo "$entry, but $t -h says '$summary'"; return 1; }
	done
}

completions_load() {
	local t dir="$d/usr/local/share"
	for t in $tools; do
		bash -c '. "$1" && complete -p "$2"' - "$dir/bash-completion/completions/$t" "$t" >/dev/null || return
		grep -qx "#compdef $t" "$dir/zsh/site-functions/_$t" || { echo "_$t: no #compdef $t"; return 1; }
		grep -q "^complete -c $t " "$dir/fish/vendor_completions.d/$t.fish" || { echo "$t.fish: no complete -c $t"; return 1; }
	done
	# Completion itself: "lcfs layer cl" becomes "lcfs layer clone".
	bash -c '. "$1"; COMP_WORDS=(lcfs layer cl); COMP_CWORD=2; COMP_LINE="lcfs layer cl"
		COMP_POINT=${#COMP_LINE}; _lcfs lcfs cl layer; [ "${COMPREPLY[*]}" = clone ]' - \
		"$dir/bash-completion/completions/lcfs"
}

# systemd-analyze verify inside the DESTDIR: the unit parses and ExecStart names an executable
# there.
unit_verifies() {
	local unit=/usr/local/lib/systemd/system/containerd-lcfs-grpc.service
	systemd-analyze verify --root="$d" --man=no --recursive-errors=no "$unit" || return
	grep -qx 'ExecStart=/usr/local/bin/containerd-lcfs-grpc --config /etc/containerd-lcfs/config.toml' "$d$unit"
}

uninstall_removes_all() {
	make -s uninstall DESTDIR="$d" || return
	local left
	left=$(files_under "$d")
	[ -z "$left" ] || { echo "left behind:"; echo "$left"; return 1; }
}

# make install and uninstall with other directories, as a user without root (nobody, when this
# runs as root): DESTDIR needs no privileges.
prefix_unprivileged() {
	local d2="$tmp/root-usr" as=() u
	mkdir "$d2"
	if [ "$(id -u)" = 0 ]; then
		chown nobody: "$d2"
		as=(setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups env HOME=/)
		"${as[@]}" test -r Makefile -a -x scripts ||
			{ echo "nobody cannot read $LCFS_ROOT"; return 1; }
	fi
	"${as[@]}" make -s install DESTDIR="$d2" PREFIX=/usr SBINDIR=/sbin SYSCONFDIR=/etc/lcfs || return
	for f in sbin/mkfs.lcfs sbin/fsck.lcfs usr/bin/lcfs usr/bin/containerd-lcfs-grpc usr/share/man/man8/lcfs.8 \
		usr/share/bash-completion/completions/lcfs usr/lib/systemd/system/containerd-lcfs-grpc.service \
		etc/lcfs/containerd-lcfs/config.toml; do
		[ -f "$d2/$f" ] || { echo "no $f"; return 1; }
	done
	grep -qx 'ExecStart=/usr/bin/containerd-lcfs-grpc --config /etc/lcfs/containerd-lcfs/config.toml' \
		"$d2/usr/lib/systemd/system/containerd-lcfs-grpc.service" || { echo "ExecStart not fixed up"; return 1; }
	u=$(find "$d2" ! -user "$(stat -c %U "$d2")" | sed -n 1p)
	[ -z "$u" ] || { echo "$u is not owned by the installing user"; return 1; }
	"${as[@]}" make -s uninstall DESTDIR="$d2" PREFIX=/usr SBINDIR=/sbin SYSCONFDIR=/etc/lcfs || return
	u=$(files_under "$d2")
	[ -z "$u" ] || { echo "left behind:"; echo "$u"; return 1; }
}

# An edited config.toml is the administrator's: install does not replace it, uninstall keeps it.
config_kept() {
	local dc="$tmp/root-conf"
	local conf="$dc/etc/containerd-lcfs/config.toml"
	make -s install DESTDIR="$dc" || return
	echo 'log_level = "debug"' >>"$conf"
	make -s install DESTDIR="$dc" || return
	grep -q '^log_level = "debug"' "$conf" || { echo "install replaced the edited $conf"; return 1; }
	make -s uninstall DESTDIR="$dc" || return
	grep -q '^log_level = "debug"' "$conf" || { echo "uninstall removed the edited $conf"; return 1; }
}

# install-module: lcfs.ko alone (no module indexes: no depmod in a DESTDIR) in
# lib/modules/VERSION/updates, the module make module built; uninstall-module removes it.
module_install() {
	local d3="$tmp/root-module" kdir kver
	kdir=$(kernel_dir) && kver=$(make -s -C "$kdir" kernelrelease) || return
	make -s install-module DESTDIR="$d3" || return
	diff -u <(echo "644 lib/modules/$kver/updates/lcfs.ko") <(files_under "$d3") || return
	cmp "$(module_dir)/lcfs.ko" "$d3/lib/modules/$kver/updates/lcfs.ko" || return
	modinfo -F alias "$d3/lib/modules/$kver/updates/lcfs.ko" | grep -qx fs-lcfs || { echo "no fs-lcfs alias"; return 1; }
	make -s uninstall-module DESTDIR="$d3" || return
	[ -z "$(files_under "$d3")" ] || { echo "uninstall-module left:"; files_under "$d3"; return 1; }
}

# install-dkms: dkms.conf and the sources Kbuild builds, as copy_module_sources copies them, under
# PREFIX/src/lcfs-VERSION, PACKAGE_VERSION the tools' version; uninstall-dkms removes the tree.
dk="$tmp/root-dkms"
dkms_tree() {
	local src="$dk/usr/local/src/lcfs-$version" ref="$tmp/ref"
	make -s install-dkms DESTDIR="$dk" || return
	grep -qx "PACKAGE_VERSION=\"$version\"" "$src/dkms.conf" || { echo "dkms.conf: not PACKAGE_VERSION=\"$version\""; return 1; }
	mkdir "$ref" && copy_module_sources "$ref" && cp dkms.conf "$ref/" || return
	diff -r "$ref" "$src" || return
	[ -f "$src/Kbuild" ] && [ -f "$src/src/lcfs_main.rs" ] && [ -f "$src/include/uapi/linux/lcfs.h" ] ||
		{ echo "the tree lacks Kbuild, src/lcfs_main.rs or include/uapi/linux/lcfs.h"; return 1; }
}

# DKMS builds lcfs.ko for the test kernel from that tree, in a DKMS tree of its own (nothing of
# the machine's DKMS state is touched).
dkms_builds() {
	local kdir kver t="$tmp/dkms" ko
	command -v dkms >/dev/null || { echo "dkms is not installed (scripts/setup.sh installs it)"; return 1; }
	kdir=$(kernel_dir) && kver=$(make -s -C "$kdir" kernelrelease) || return
	mkdir -p "$t/tree" "$t/src"
	dkms add "$dk/usr/local/src/lcfs-$version" --dkmstree "$t/tree" --sourcetree "$t/src" || return
	if ! dkms build "lcfs/$version" -k "$kver" --kernelsourcedir "$kdir" --dkmstree "$t/tree" --sourcetree "$t/src"; then
		cat "$t"/tree/lcfs/"$version"/build/make.log 2>/dev/null | tail -20
		return 1
	fi
	ko="$t/tree/lcfs/$version/$kver/$(uname -m)/module/lcfs.ko"
	[ "$(modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$kver" ] || { echo "$ko: not built for $kver"; return 1; }
	modinfo -F alias "$ko" | grep -qx fs-lcfs
}

dkms_uninstall() {
	make -s uninstall-dkms DESTDIR="$dk" || return
	[ -z "$(files_under "$dk")" ] || { echo "uninstall-dkms left:"; files_under "$dk"; return 1; }
}

check "make install into a DESTDIR" install_default
check "every file in its place with its mode, nothing else" files_and_modes
check "installed tools print their version" tools_run
check "mkfs -t lcfs and fsck -t lcfs run the installed tools" mkfs_fsck_find_tools
check "man pages format without warnings" man_pages_format
check "man pages' NAME lines name each tool with its own summary" man_pages_named
check "bash, zsh and fish completions load" completions_load
check "systemd unit verifies and starts the installed daemon" unit_verifies
check "uninstall removes every installed file" uninstall_removes_all
check "an edited configuration survives install and uninstall" config_kept
check "PREFIX, SBINDIR and SYSCONFDIR followed, without root" prefix_unprivileged
check "install-module: modules_install into DESTDIR, no depmod; uninstall-module" module_install
check "install-dkms: dkms.conf and the module sources" dkms_tree
check "DKMS builds lcfs.ko from the installed tree" dkms_builds
check "uninstall-dkms removes the tree" dkms_uninstall
