# SPDX-License-Identifier: GPL-2.0
# containerd benchmark (not a test), run by tests/guest/containerdbench.sh in the guest booted
# into the Debian root: the lcfs snapshotter (containerd-lcfs-grpc, a proxy plugin) beside
# containerd's built-in overlayfs, native and btrfs snapshotters, each on a fresh filesystem made
# in turn on the same virtual disk (/dev/vda), with a fresh containerd. containerd's own state
# (content store, metadata) stays on the root disk for all four, so only the snapshotter differs.
#
#   import              `ctr image import --snapshotter X` of the Debian image (ingest and
#                       unpack), median of IMPORT_REPEAT, the image removed (--sync) in between
#   ctr-noop            `ctr snapshots info` of the image's top layer: what a ctr process costs
#   rpc-noop ... commit the snapshotter level, through lcfs-churn (tests/containerd/churn)
#   run-seq             CHURN_N times `ctr run --rm IMAGE ID true`, one after the other, then a
#                       synchronous collection (the snapshotters' Removes), all timed
#   run-par             CHURN_N of them, PARALLEL at a time, then a synchronous collection
#
# Every result is printed as "BENCH test=TEST fs=SNAPSHOTTER n=N value=VALUE unit=UNIT" (import
# in s, the others in ms per call or per container) on stdout for scripts/containerdbench.sh;
# progress goes to stderr; both to the console as they come. Settings (environment): CHURN_N
# (default 100: the run takes an estimated 75 minutes under TCG, most of it the native
# snapshotter's, which copies the image for every snapshot, and btrfs's commits; a run with 20
# took about 20), CHURN_COMMIT_N (default CHURN_N), CHURN_RUN_N (default CHURN_N),
# IMPORT_REPEAT (3), CTR_NOOP_N (20), PARALLEL (10), SNAPSHOTTERS (lcfs,overlayfs,native,btrfs).
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

DEV = "/dev/vda"
IMAGE = "localhost/lcfs-test/debian:bookworm"
TARBALL = "/images/debian.tar"
ROOT = "/var/lib/containerd"
LCFS_SOCK = "/run/containerd-lcfs/containerd-lcfs-grpc.sock"
LCFS_MNT = "/var/lib/containerd-lcfs/mnt"
# The daemon's own layer, its database's (Documentation/containerd.md).
LCFS_META_LAYER = ".containerd-meta"
# What containerd's collector logs when a snapshotter's Remove or Cleanup fails; it reports the
# collection done all the same.
GC_FAILED = ("garbage collection failed", "failed to remove snapshot")

KNOWN = ["lcfs", "overlayfs", "native", "btrfs"]


def positive(name, default):
    """A setting that must be a positive integer: a bad one stops the run before the first round,
    not hours into it."""
    v = os.environ.get(name, default)
    if not re.fullmatch(r"[1-9][0-9]*", v):
        sys.exit(f"containerdbench: {name} must be a positive integer, not {v!r}")
    return int(v)


N = positive("CHURN_N", "100")
COMMIT_N = positive("CHURN_COMMIT_N", str(N))
RUN_N = positive("CHURN_RUN_N", str(N))
IMPORT_REPEAT = positive("IMPORT_REPEAT", "3")
CTR_NOOP_N = positive("CTR_NOOP_N", "20")
PARALLEL = positive("PARALLEL", "10")
SNAPSHOTTERS = os.environ.get("SNAPSHOTTERS", ",".join(KNOWN)).split(",")
if not set(SNAPSHOTTERS) <= set(KNOWN):
    sys.exit(f"containerdbench: SNAPSHOTTERS must be some of {','.join(KNOWN)}, "
             f"not {os.environ['SNAPSHOTTERS']!r}")

T0 = time.monotonic()


def progress(msg):
    """Progress for the console as it happens; the results go to stdout, also the console."""
    print(f"# [{time.monotonic() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def bench(test, fs, n, value, unit="ms"):
    # Flushed at once: a run cut short by the timeout keeps the results measured so far.
    print(f"BENCH test={test} fs={fs} n={n} value={value:.3f} unit={unit}", flush=True)


def run(*cmd, **kw):
    """Runs a command; its output goes to the log only if it fails."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode}:\n{p.stdout}")
    return p.stdout


def ctr(*args):
    return run("ctr", *args)


def wait_for(what, seconds, f, proc=None):
    """Waits until f() is true; a daemon (proc) that exits fails the wait at once."""
    end = time.monotonic() + seconds
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: it exited with status {proc.returncode}")
        try:
            if f():
                return
        except (OSError, RuntimeError):
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"{what} within {seconds} s")
        time.sleep(0.1)


def connects(path):
    """Whether a server accepts connections on the Unix socket (a socket file alone may be a
    stale one or not yet listened on)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
    return True


def ms_since(t):
    return (time.monotonic() - t) * 1000


# --- each snapshotter's filesystem and daemons -------------------------------------------------

def snapshotter_dir(sn):
    return f"{ROOT}/io.containerd.snapshotter.v1.{sn}"


def make_fs(sn):
    """A fresh filesystem on the disk for this round; lcfs's daemon makes its own (--format),
    which refuses a disk with another filesystem's signature, so every round starts from a
    wiped disk."""
    run("/usr/sbin/wipefs", "-q", "-a", DEV)
    if sn in ("overlayfs", "native"):
        run("/usr/sbin/mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", DEV)
        os.makedirs(snapshotter_dir(sn))
        run("/usr/bin/mount", "-t", "ext4", DEV, snapshotter_dir(sn))
    elif sn == "btrfs":
        run("/usr/sbin/mkfs.btrfs", "-q", "-f", DEV)
        os.makedirs(snapshotter_dir(sn))
        run("/usr/bin/mount", "-t", "btrfs", DEV, snapshotter_dir(sn))


def containerd_log(sn):
    return f"/tmp/containerd-{sn}.log"


def write_config(sn):
    # The same configuration for every round; only lcfs's round names the proxy plugin (the
    # others have no daemon to answer it).
    proxy = ""
    if sn == "lcfs":
        proxy = f'[proxy_plugins]\n  [proxy_plugins.lcfs]\n    type = "snapshot"\n    address = "{LCFS_SOCK}"\n'
    os.makedirs("/etc/containerd", exist_ok=True)
    with open("/etc/containerd/config.toml", "w") as f:
        # Kubernetes' CRI is not measured (and wants a CNI set-up).
        f.write('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' + proxy)


def same_cache():
    """Every round starts from the same page cache: the previous round's pages (its filesystem's,
    containerd's) dropped, and the files every round reads read in, so that no round pays for
    reading them alone."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
    for f in [TARBALL, "/usr/bin/ctr", "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2",
              "/usr/sbin/runc"]:
        if os.path.exists(f):
            with open(f, "rb") as r:
                while r.read(1 << 20):
                    pass


class Round:
    """One snapshotter's turn: its filesystem, the lcfs daemon if it is lcfs's, containerd."""

    def __init__(self, sn):
        self.sn = sn
        self.procs = []
        self.logs = []

    def start(self, what, cmd, log, ready):
        with open(log, "a") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(p)
        self.logs.append(log)
        wait_for(f"{what} did not start", 120, ready, p)

    def __enter__(self):
        for d in (ROOT, "/run/containerd", os.path.dirname(LCFS_SOCK)):
            shutil.rmtree(d, ignore_errors=True)
        make_fs(self.sn)
        write_config(self.sn)
        same_cache()
        try:
            if self.sn == "lcfs":
                self.start("containerd-lcfs-grpc", ["containerd-lcfs-grpc", "--device", DEV, "--format"],
                           "/tmp/lcfs-grpc.log", lambda: connects(LCFS_SOCK))
            self.start("containerd", ["containerd"], containerd_log(self.sn),
                       lambda: ctr("version") is not None)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            # What the daemons said last, for the console.
            for log in self.logs:
                with open(log) as f:
                    sys.stderr.write(f"--- {log} (end)\n" + "".join(f.readlines()[-30:]))
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        # The daemon leaves its filesystem mounted (containers may hold bind mounts of it).
        for m in (snapshotter_dir(self.sn), LCFS_MNT):
            if os.path.ismount(m):
                run("/usr/bin/umount", m)
        return False


# --- the checks: a failed Remove must not pass for a fast one --------------------------------

def check_collections(sn, after):
    """Fails the round if containerd's collector failed to remove anything so far: it only logs
    the failure, so a failing snapshotter would look fast and leak its layers."""
    with open(containerd_log(sn)) as f:
        failed = [line for line in f if any(m in line for m in GC_FAILED)]
    if failed:
        raise RuntimeError(f"{sn}: containerd's garbage collection failed ({after}):\n"
                           + "".join(failed[-10:]))


def check_nothing_left(sn):
    """Fails the round if a snapshot outlived the image's removal, in containerd's records or in
    the snapshotter's own (lcfs's layers, the built-in snapshotters' directories): containerd
    drops its record before the snapshotter's Remove, which may have failed."""
    left = ctr("snapshots", "--snapshotter", sn, "ls").splitlines()[1:]
    if sn == "lcfs":
        left += [line for line in run("lcfs", "layer", "list", "-m", LCFS_MNT).splitlines()[1:]
                 if line.split()[1] != LCFS_META_LAYER]
    else:
        for sub in ("snapshots", "active", "view"):
            d = os.path.join(snapshotter_dir(sn), sub)
            if os.path.isdir(d):
                left += [os.path.join(d, e) for e in sorted(os.listdir(d))]
    if left:
        raise RuntimeError(f"{sn}: snapshots left after the image was removed:\n"
                           + "\n".join(left[:20]))


# --- the measurements ------------------------------------------------------------------------

def top_layer(sn):
    """The committed snapshot that is no other's parent: the image's top layer (the only image
    is unpacked). `ctr snapshots ls` prints KEY PARENT KIND, PARENT blank for none."""
    keys, parents = set(), set()
    for line in ctr("snapshots", "--snapshotter", sn, "ls").splitlines()[1:]:
        f = line.split()
        if f[-1] == "Committed":
            keys.add(f[0])
        if len(f) == 3:
            parents.add(f[1])
    top = keys - parents
    if len(top) != 1:
        raise RuntimeError(f"no single top layer among {sorted(keys)}")
    return top.pop()


def import_image(sn):
    times = []
    for i in range(IMPORT_REPEAT):
        if i > 0:
            ctr("image", "rm", "--sync", IMAGE)
        t = time.monotonic()
        ctr("image", "import", "--snapshotter", sn, TARBALL)
        times.append(ms_since(t))
        progress(f"{sn}: import {i + 1}: {times[-1] / 1000:.1f} s")
    bench("import", sn, IMPORT_REPEAT, statistics.median(times) / 1000, "s")


def ctr_noop(sn, parent):
    t = time.monotonic()
    for _ in range(CTR_NOOP_N):
        ctr("snapshots", "--snapshotter", sn, "info", parent)
    bench("ctr-noop", sn, CTR_NOOP_N, ms_since(t) / CTR_NOOP_N)


def churn(sn, parent):
    # lcfs-churn prints its results to our stdout as it measures them.
    sys.stdout.flush()
    p = subprocess.run(["lcfs-churn", "-snapshotter", sn, "-parent", parent, "-n", str(N),
                        "-commit-n", str(COMMIT_N)])
    if p.returncode != 0:
        raise RuntimeError(f"lcfs-churn exited with {p.returncode}")


def ctr_run(sn, cid):
    ctr("run", "--rm", "--snapshotter", sn, IMAGE, cid, "true")


def collect(lease):
    """A synchronous collection (a throwaway lease deleted with --sync), as lcfs-churn asks for
    one: `ctr run --rm` only drops containerd's record, and the snapshotter's Remove waits for
    containerd's background collector, which would otherwise finish part of a timed loop's
    removals after the loop, unevenly between snapshotters."""
    ctr("leases", "create", "--id", lease)
    ctr("leases", "rm", "--sync", lease)


def runs(sn):
    # One untimed container first (the shim's and runc's first start), its removal collected
    # before the clock starts.
    ctr_run(sn, "warm")
    collect("run-warm")
    t = time.monotonic()
    for i in range(RUN_N):
        ctr_run(sn, f"seq-{i}")
    collect("run-seq")
    bench("run-seq", sn, RUN_N, ms_since(t) / RUN_N)
    progress(f"{sn}: {RUN_N} containers one at a time: {ms_since(t) / 1000:.1f} s")
    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        for f in [pool.submit(ctr_run, sn, f"par-{i}") for i in range(RUN_N)]:
            f.result()
    collect("run-par")
    bench("run-par", sn, RUN_N, ms_since(t) / RUN_N)
    progress(f"{sn}: {RUN_N} containers {PARALLEL} at a time: {ms_since(t) / 1000:.1f} s")


def main():
    progress(f"CHURN_N={N} CHURN_COMMIT_N={COMMIT_N} CHURN_RUN_N={RUN_N} IMPORT_REPEAT={IMPORT_REPEAT} "
             f"snapshotters {','.join(SNAPSHOTTERS)}")
    for sn in SNAPSHOTTERS:
        start = time.monotonic()
        with Round(sn):
            progress(f"{sn}: started")
            import_image(sn)
            parent = top_layer(sn)
            ctr_noop(sn, parent)
            progress(f"{sn}: snapshotter level, top layer {parent}")
            churn(sn, parent)
            check_collections(sn, "after the import and the snapshotter level")
            progress(f"{sn}: snapshotter level done")
            runs(sn)
            ctr("image", "rm", "--sync", IMAGE)
            check_collections(sn, "by the end of the round")
            check_nothing_left(sn)
        progress(f"{sn}: round took {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
