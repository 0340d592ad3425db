# SPDX-License-Identifier: GPL-2.0
# Shared by the suites that run containerd with containerd-lcfs-grpc in the guest booted into
# Debian (tests/guest/containerd.sh, tests/guest/containerd-crash.sh); sourced after lib.sh.

SOCK=/run/containerd-lcfs/containerd-lcfs-grpc.sock
M=/var/lib/containerd-lcfs/mnt
# Debian's shell and core tools in two layers (scripts/mkrootfs.sh: debian-slim.tar).
DEBIAN=localhost/lcfs-test/debian-slim:bookworm
BUSYBOX=localhost/lcfs-test/busybox:1
snap() { ctr snapshots --snapshotter lcfs "$@"; }
# Committed, active and view snapshots as containerd lists them: "KEY PARENT KIND", PARENT "-"
# for none (ctr leaves the column blank).
snaps() { snap ls | awk 'NR > 1 { if (NF == 3) print $1, $2, $3; else print $1, "-", $2 }'; }
has_snap() { snaps | awk -v k="$1" '$1 == k { found = 1 } END { exit !found }'; }

wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
	_n=$(( $1 * 10 )); shift
	while ! "$@" >/dev/null 2>&1; do
		_n=$((_n - 1))
		[ $_n -gt 0 ] || return 1
		sleep 0.1
	done
}

# containerd's configuration: the daemon as the proxy plugin "lcfs".
write_containerd_config() {
	mkdir -p /etc/containerd
	cat >/etc/containerd/config.toml <<CONF
version = 2
# Kubernetes' CRI is not what these suites test (and wants a CNI set-up).
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[proxy_plugins]
  [proxy_plugins.lcfs]
    type = "snapshot"
    address = "$SOCK"
CONF
}

start_snapshotter() {
	modprobe lcfs # as the systemd unit's ExecStartPre
	# --format: the scratch disk is blank at the first start; later starts find LCFS on it.
	containerd-lcfs-grpc --device /dev/vda --format --log-level info >>/tmp/lcfs-grpc.log 2>&1 &
	echo $! >/tmp/lcfs-grpc.pid
	wait_for 60 test -S $SOCK || { cat /tmp/lcfs-grpc.log; fail "the snapshotter did not start"; }
}

stop_snapshotter() { # stop_snapshotter [SIGNAL]
	_pid=$(cat /tmp/lcfs-grpc.pid)
	kill -"${1:-TERM}" "$_pid"
	wait_for 60 sh -c "! kill -0 $_pid" || fail "the snapshotter did not stop"
}

start_containerd() {
	containerd >>/tmp/containerd.log 2>&1 &
	echo $! >/tmp/containerd.pid
	wait_for 120 ctr version || { tail -50 /tmp/containerd.log; fail "containerd did not start"; }
}

stop_containerd() {
	_pid=$(cat /tmp/containerd.pid)
	kill "$_pid"
	wait_for 60 sh -c "! kill -0 $_pid" || fail "containerd did not stop"
}

# Used bytes of the LCFS filesystem (statfs).
used() { stat -f -c '%b %f %S' $M | awk '{ print ($1 - $2) * $3 }'; }

reclaimed() { [ "$(lcfs df $M --json | awk '/"reclaim_queued"/ { print $2 }')" = "0," ]; }

# Layers on the filesystem other than those whose names start with "." (the daemon's database,
# and the others it leaves alone): "NAME STATE".
layers() { lcfs layer list -m $M | awk 'NR > 1 && $2 !~ /^\./ { print $2, $4 }'; }
