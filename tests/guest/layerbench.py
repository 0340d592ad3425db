# SPDX-License-Identifier: GPL-2.0
# Layer benchmark (not a test), run by tests/guest/layerbench.sh in the Debian root: what layer
# operations cost on lcfs beside the same operation on btrfs (subvolume snapshots, through its
# ioctls) and overlayfs (on ext4), on the same virtual disk in one guest run. Operations are timed
# around the system call alone with a monotonic clock; each timed operation runs REPEAT times and
# the median is printed as
#
#   BENCH test=TEST fs=FS n=N value=VALUE unit=UNIT
#
# for scripts/layerbench.sh, which makes the table. Sizes: N inodes per layer for each N in
# $SIZES, a $BIG_MB MiB file for the copy-on-write and freeze tests, a $TREE-file tree seen
# through a chain of $DEPTH clones or overlay lower directories. The page-cache part: $CLONES
# clones (btrfs snapshots, overlay mounts on one lower directory) each reading one $SHARE_MB MiB
# file and executing one binary. The parallel part: fio 4 KiB random reads (cold caches) of a
# $PAR_MB MiB file in each of two frozen layers (btrfs subvolumes, ext4 directories), one job
# against two at once for $PAR_SECONDS s each, $PAR_ROUNDS interleaved rounds (medians). The
# creates part: $CREATES empty files created in one layer alone, then in each of two layers at
# once (lcfs read-write layers, btrfs subvolumes, ext4 directories). The latency part: cold
# stats and 4 KiB reads of $LAT_FILES files in a clone of a frozen image (a btrfs snapshot, an
# ext4 directory), and as many creates of 100-byte files in it, with another layer idle and with
# it running a write-and-fsync loop. $PARTS
# picks parts (default: all of layers,cow,depth,pagecache,parallel,creates,latency).
import ctypes
import fcntl
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, "/tmp")
import layer_abi as abi  # noqa: E402

DEV = "/dev/vda"
MNT = "/mnt"
SIZES = [int(n) for n in os.environ.get("SIZES", "1000,100000").replace(",", " ").split()]
BIG_MB = int(os.environ.get("BIG_MB", "256"))
TREE = int(os.environ.get("TREE", "10000"))
DEPTH = int(os.environ.get("DEPTH", "128"))
REPEAT = int(os.environ.get("REPEAT", "5"))
COLD_MAX = int(os.environ.get("COLD_MAX", "100000"))
CLONES = int(os.environ.get("CLONES", "100"))
SHARE_MB = int(os.environ.get("SHARE_MB", "100"))
PAR_MB = int(os.environ.get("PAR_MB", "128"))
PAR_SECONDS = int(os.environ.get("PAR_SECONDS", "20"))
PAR_ROUNDS = int(os.environ.get("PAR_ROUNDS", "1"))
CREATES = int(os.environ.get("CREATES", "50000"))
LAT_FILES = int(os.environ.get("LAT_FILES", "2000"))
PARTS = os.environ.get("PARTS", "layers,cow,depth,pagecache,parallel,creates,latency").split(",")

# btrfs ioctls (include/uapi/linux/btrfs.h): struct btrfs_ioctl_vol_args_v2 is 4096 bytes: fd,
# transid, flags, 4 unused u64, then the name (4040 bytes).
BTRFS_MAGIC = 0x94
VOL_ARGS_V2 = struct.Struct("<qQQ4Q4040s")


def btrfs_code(nr):
    return (abi.W << 30) | (VOL_ARGS_V2.size << 16) | (BTRFS_MAGIC << 8) | nr


BTRFS_IOC_SNAP_CREATE_V2 = btrfs_code(23)
BTRFS_IOC_SUBVOL_CREATE_V2 = btrfs_code(24)
BTRFS_IOC_SNAP_DESTROY_V2 = btrfs_code(63)


def bench(test, fs, n, value, unit):
    print(f"BENCH test={test} fs={fs} n={n} value={value:.3f} unit={unit}", flush=True)


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def timed(f):
    t = time.perf_counter_ns()
    f()
    return (time.perf_counter_ns() - t) / 1e6  # ms


def median_ms(f, repeat=REPEAT):
    return statistics.median(timed(lambda: f(i)) for i in range(repeat))


def mean_ms(f, count):
    """The mean of `count` calls timed together: the guest's clock advances in 4 ms steps under
    TCG (no HPET or ACPI timer to calibrate the TSC against), too coarse for one fast call."""
    return timed(lambda: [f(i) for i in range(count)]) / count


def populate(root, n):
    """n files in directories of 1000, plus their directories."""
    t = time.monotonic()
    for d in range((n + 999) // 1000):
        os.mkdir(f"{root}/d{d}")
        for i in range(min(1000, n - d * 1000)):
            os.close(os.open(f"{root}/d{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    # Progress for the log (not a result): how long the set-up takes at this size.
    print(f"# populated {root} with {n} files in {time.monotonic() - t:.0f} s", flush=True)


def mount_lcfs():
    run("umount", "-q", MNT) if os.path.ismount(MNT) else None
    run("/tmp/mkfs.lcfs", "-f", "-q", DEV)
    run("mount", "-t", "lcfs", DEV, MNT)
    return os.open(MNT, os.O_RDONLY | os.O_DIRECTORY)


def mount_btrfs():
    run("mkfs.btrfs", "-q", "-f", DEV)
    run("mount", "-t", "btrfs", DEV, MNT)
    return os.open(MNT, os.O_RDONLY | os.O_DIRECTORY)


def mount_ext4():
    # One inode per 4 KiB: the default (one per 16 KiB) runs out below a million files on 8 GiB.
    run("mkfs.ext4", "-q", "-F", "-i", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", DEV)
    run("mount", "-t", "ext4", DEV, MNT)


def umount():
    os.sync()
    run("umount", MNT)


def lcfs_id(fd, name):
    got, info = abi.info_of(fd, name=name.encode())
    assert got == 0, (name, got)
    return info["id"]


def lcfs_call(fd, code, arg):
    fcntl.ioctl(fd, code, arg)


def lcfs_clone(fd, src, name, ro=False):
    return abi.CREATE.unpack(fcntl.ioctl(fd, abi.IOC_CLONE, abi.create(source=src, flags=int(ro), name=name.encode())))[3]


def lcfs_snapshot(fd, src, name):
    return abi.CREATE.unpack(fcntl.ioctl(fd, abi.IOC_SNAPSHOT, abi.create(source=src, name=name.encode())))[3]


def lcfs_create(fd, name):
    return abi.CREATE.unpack(fcntl.ioctl(fd, abi.IOC_CREATE, abi.create(name=name.encode())))[3]


def lcfs_reclaimed(fd):
    # Waits until LCFS_IOC_FS_INFO's reclaim_queued (offset 112) is 0: the space of every removed
    # layer is free.
    buf = bytearray(abi.FS_INFO_SIZE)
    while True:
        fcntl.ioctl(fd, abi.IOC_FS_INFO, buf)
        if struct.unpack_from("<Q", buf, 112)[0] == 0:
            return
        time.sleep(0.001)


def btrfs_snapshot(dirfd, src_path, name, ro=False):
    src = os.open(src_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(dirfd, BTRFS_IOC_SNAP_CREATE_V2, bytearray(VOL_ARGS_V2.pack(src, 0, 2 if ro else 0, 0, 0, 0, 0, name.encode())))
    finally:
        os.close(src)


def btrfs_subvol(dirfd, name):
    fcntl.ioctl(dirfd, BTRFS_IOC_SUBVOL_CREATE_V2, bytearray(VOL_ARGS_V2.pack(0, 0, 0, 0, 0, 0, 0, name.encode())))


def btrfs_destroy(dirfd, name):
    fcntl.ioctl(dirfd, BTRFS_IOC_SNAP_DESTROY_V2, bytearray(VOL_ARGS_V2.pack(0, 0, 0, 0, 0, 0, 0, name.encode())))


def du(path):
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(root, f)).st_blocks
    return total


def per_size(n):
    # lcfs: an image layer of n inodes, frozen.
    fd = mount_lcfs()
    if n <= COLD_MAX:
        # Written first and its caches dropped, so that nothing of it is cached at its removal.
        cold = lcfs_create(fd, "cold")
        populate(f"{MNT}/cold", n)
        drop_caches()
    img = lcfs_create(fd, "img")
    populate(f"{MNT}/img", n)
    lcfs_call(fd, abi.IOC_FREEZE, abi.REF.pack(img, 0, 0, 0))
    os.sync()
    bench("clone", "lcfs", n, mean_ms(lambda i: lcfs_clone(fd, img, f"c{i}"), 50), "ms")
    rw = lcfs_id(fd, "c0")
    with open(f"{MNT}/c0/d0/f0", "w") as f:
        f.write("x")
    bench("snapshot", "lcfs", n, mean_ms(lambda i: lcfs_snapshot(fd, rw, f"s{i}"), 25), "ms")
    bench("usage", "lcfs", n, mean_ms(lambda i: abi.info_of(fd, rw), 500), "ms")
    buf = ctypes.create_string_buffer(abi.DIFF_BUF_MIN)

    def diff_walk(i):
        cursor = (0, 0, 0, 0)
        while True:
            out = fcntl.ioctl(fd, abi.IOC_DIFF, abi.diff(rw, ctypes.addressof(buf), cursor=cursor))
            f = abi.DIFF.unpack(out)
            cursor = f[2:6]
            if cursor == (0, 0, 0, 0):
                return

    # Before the du walk, which updates the access time of every directory it reads (a change
    # of each in the clone's diff).
    bench("diff-one-change", "lcfs", n, mean_ms(diff_walk, 50), "ms")
    bench("usage-du", "lcfs", n, median_ms(lambda i: du(f"{MNT}/c0"), 1), "ms")
    # Removal of a layer of n inodes of its own: the image, once its clones and snapshots are
    # gone (each removal of those frees a few nodes). Its entries are in the dentry cache as far
    # as memory kept them since it was written; the removal prunes them. Up to COLD_MAX inodes,
    # also the layer written first, none of it cached.
    for i in range(50):
        lcfs_call(fd, abi.IOC_REMOVE, abi.REF.pack(lcfs_id(fd, f"c{i}"), 0, 0, 0))
    for i in range(25):
        lcfs_call(fd, abi.IOC_REMOVE, abi.REF.pack(lcfs_id(fd, f"s{i}"), 0, 0, 0))
    lcfs_reclaimed(fd)
    bench("remove", "lcfs", n, timed(lambda: lcfs_call(fd, abi.IOC_REMOVE, abi.REF.pack(img, 0, 0, 0))), "ms")
    # Until the space is back: the background reclaim, in committed chunks.
    bench("remove+reclaim", "lcfs", n, timed(lambda: lcfs_reclaimed(fd)), "ms")
    if n <= COLD_MAX:
        bench("remove-cold", "lcfs", n, timed(lambda: lcfs_call(fd, abi.IOC_REMOVE, abi.REF.pack(cold, 0, 0, 0))), "ms")
        lcfs_reclaimed(fd)
    os.close(fd)
    umount()
    run("/tmp/fsck.lcfs", "-n", DEV)

    # btrfs: the same image as a subvolume.
    fd = mount_btrfs()
    if n <= COLD_MAX:
        btrfs_subvol(fd, "cold")
        populate(f"{MNT}/cold", n)
        drop_caches()
    btrfs_subvol(fd, "img")
    populate(f"{MNT}/img", n)
    os.sync()
    bench("clone", "btrfs", n, mean_ms(lambda i: btrfs_snapshot(fd, f"{MNT}/img", f"c{i}"), 50), "ms")
    with open(f"{MNT}/c0/d0/f0", "w") as f:
        f.write("x")
    bench("snapshot", "btrfs", n, mean_ms(lambda i: btrfs_snapshot(fd, f"{MNT}/c0", f"s{i}", ro=True), 25), "ms")
    bench("usage-du", "btrfs", n, median_ms(lambda i: du(f"{MNT}/c0"), 1), "ms")
    bench("remove", "btrfs", n, timed(lambda: btrfs_destroy(fd, "img")), "ms")
    # Until the space is back: the cleaner's work.
    bench("remove+reclaim", "btrfs", n, timed(lambda: run("btrfs", "subvolume", "sync", MNT)), "ms")
    if n <= COLD_MAX:
        bench("remove-cold", "btrfs", n, timed(lambda: btrfs_destroy(fd, "cold")), "ms")
        run("btrfs", "subvolume", "sync", MNT)
    os.close(fd)
    umount()

    # overlayfs on ext4: an upper directory of n files, removed with rm -rf; a walk of an upper
    # directory holding one change.
    mount_ext4()
    os.makedirs(f"{MNT}/upper")
    populate(f"{MNT}/upper", n)
    os.sync()
    bench("remove", "overlay", n, timed(lambda: shutil.rmtree(f"{MNT}/upper")), "ms")
    os.makedirs(f"{MNT}/one/d0")
    open(f"{MNT}/one/d0/f0", "w").close()

    def walk(i):
        for _ in os.walk(f"{MNT}/one"):
            pass

    bench("diff-one-change", "overlay", n, mean_ms(walk, 50), "ms")
    umount()


def first_write(fs, path, test="first-write", n=BIG_MB):
    """Times opening `path`, a 1-byte write and fsync, and reports the space it took."""
    os.sync()
    before = os.statvfs(MNT)

    def write():
        wfd = os.open(path, os.O_WRONLY)
        os.pwrite(wfd, b"z", 12345)
        os.fsync(wfd)
        os.close(wfd)

    bench(test, fs, n, timed(write), "ms")
    os.sync()
    used = (before.f_bfree - os.statvfs(MNT).f_bfree) * before.f_bsize / 1024
    bench(test + "-space", fs, n, used, "KiB")


def copy_on_write():
    """The first 1-byte write into a BIG_MB MiB file of a clone, and freeze of a layer with that
    much new data."""
    size = BIG_MB << 20
    chunk = b"\xa5" * (1 << 20)
    fd = mount_lcfs()

    def freeze(layer):
        return timed(lambda: lcfs_call(fd, abi.IOC_FREEZE, abi.REF.pack(layer, 0, 0, 0)))

    def write_big(path):
        with open(path, "wb") as f:
            for _ in range(BIG_MB):
                f.write(chunk)

    img = lcfs_create(fd, "img")
    write_big(f"{MNT}/img/big")
    bench("freeze-flush", "lcfs", BIG_MB, timed(os.sync), "ms")
    bench("freeze", "lcfs", BIG_MB, freeze(img), "ms")
    # The freeze writes back its own layer's dirty data, and no other layer's.
    idle = lcfs_create(fd, "idle")
    with open(f"{MNT}/idle/f", "w") as f:
        f.write("x")
    other = lcfs_create(fd, "other")
    os.sync()
    write_big(f"{MNT}/other/big")
    bench("freeze-beside-dirty", "lcfs", BIG_MB, freeze(idle), "ms")
    bench("freeze-with-flush", "lcfs", BIG_MB, freeze(other), "ms")
    lcfs_clone(fd, img, "c")
    first_write("lcfs", f"{MNT}/c/big")
    os.close(fd)
    umount()
    mount_ext4()
    for d in ("lower", "upper", "work", "merged"):
        os.makedirs(f"{MNT}/{d}")
    with open(f"{MNT}/lower/big", "wb") as f:
        for _ in range(BIG_MB):
            f.write(chunk)
    run("mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir={MNT}/lower,upperdir={MNT}/upper,workdir={MNT}/work", f"{MNT}/merged")
    first_write("overlay", f"{MNT}/merged/big")
    run("umount", f"{MNT}/merged")
    umount()


def depth():
    """stat of every file of a TREE-file tree through the DEPTH-th clone and the first, and
    through overlayfs with the tree spread over DEPTH lower directories; caches dropped first."""
    files = [f"d{i // 1000}/f{i % 1000}" for i in range(TREE)]

    def stat_all(root):
        drop_caches()
        return timed(lambda: [os.lstat(f"{root}/{p}") for p in files])

    fd = mount_lcfs()
    img = lcfs_create(fd, "img")
    populate(f"{MNT}/img", TREE)
    lcfs_call(fd, abi.IOC_FREEZE, abi.REF.pack(img, 0, 0, 0))
    prev = img
    for i in range(1, DEPTH + 1):
        prev = lcfs_clone(fd, prev, f"l{i}", ro=True)
    bench("stat-depth-1", "lcfs", TREE, statistics.median(stat_all(f"{MNT}/l1") for _ in range(3)), "ms")
    bench(f"stat-depth-{DEPTH}", "lcfs", TREE, statistics.median(stat_all(f"{MNT}/l{DEPTH}") for _ in range(3)), "ms")
    os.close(fd)
    umount()
    mount_ext4()
    lowers = []
    for layer in range(DEPTH):
        lower = f"{MNT}/lower{layer}"
        lowers.append(lower)
        for i, p in enumerate(files):
            if i % DEPTH == layer:
                os.makedirs(os.path.dirname(f"{lower}/{p}"), exist_ok=True)
                open(f"{lower}/{p}", "w").close()
    os.makedirs(f"{MNT}/merged")
    # The first lower directory is the top one: lowerdir lists them top first.
    run("mount", "-t", "overlay", "overlay", "-o", "lowerdir=" + ":".join(reversed(lowers)), f"{MNT}/merged")
    bench(f"stat-depth-{DEPTH}", "overlay", TREE, statistics.median(stat_all(f"{MNT}/merged") for _ in range(3)), "ms")
    run("umount", f"{MNT}/merged")
    umount()


def meminfo_kib(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def sectors_read():
    with open("/sys/block/vda/stat") as f:
        return int(f.read().split()[2])


def cache_growth(paths, action):
    """Page cache (MiB) and disk reads (MiB) while `action` runs on each path, caches cold."""
    drop_caches()
    c0, r0 = meminfo_kib("Cached"), sectors_read()
    for p in paths:
        action(p)
    return (meminfo_kib("Cached") - c0) / 1024, (sectors_read() - r0) / 2048


def read_file(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


def exec_file(path):
    run(path, "-c", ":")


def pagecache():
    """CLONES clones each reading one SHARE_MB MiB file, then each executing one binary (a copy
    of bash): page cache used and data read from the disk, beside btrfs snapshots and overlay
    mounts of one lower directory; warm reads of the shared cache against ext4; the first write
    into a shared file."""
    chunk = os.urandom(1 << 20)
    binary = "/usr/bin/bash"

    def fill(root):
        os.makedirs(root, exist_ok=True)
        with open(f"{root}/big", "wb") as f:
            for _ in range(SHARE_MB):
                f.write(chunk)
        shutil.copy2(binary, f"{root}/bin")

    def measure(fs, roots):
        for what, name, action in (("pagecache-read", "big", read_file), ("pagecache-exec", "bin", exec_file)):
            one, _ = cache_growth([f"{roots[0]}/{name}"], action)
            grown, disk = cache_growth([f"{r}/{name}" for r in roots], action)
            bench(what, fs, len(roots), grown, "MiB")
            bench(what + "-per-one", fs, len(roots), grown / one if one > 0 else 0, "x")
            bench(what + "-disk", fs, len(roots), disk, "MiB")
        # Warm: every clone's file is cached (or shares the cached one).
        read_file(f"{roots[1]}/big")
        t = timed(lambda: [read_file(f"{r}/big") for r in roots[1:11]])
        bench("warm-read", fs, SHARE_MB, 10 * SHARE_MB / (t / 1000), "MB/s")

    fd = mount_lcfs()
    img = lcfs_create(fd, "img")
    fill(f"{MNT}/img")
    lcfs_call(fd, abi.IOC_FREEZE, abi.REF.pack(img, 0, 0, 0))
    for i in range(CLONES):
        lcfs_clone(fd, img, f"c{i}")
    measure("lcfs", [f"{MNT}/c{i}" for i in range(CLONES)])
    # The first write into a file that shares the cache, and into one that never opened it.
    read_file(f"{MNT}/c1/big")
    first_write("lcfs", f"{MNT}/c1/big", "first-write-shared", SHARE_MB)
    lcfs_clone(fd, img, "cold")
    drop_caches()
    first_write("lcfs", f"{MNT}/cold/big", "first-write-unopened", SHARE_MB)
    os.close(fd)
    umount()

    run("mkfs.btrfs", "-q", "-f", DEV)
    run("mount", "-t", "btrfs", DEV, MNT)
    run("btrfs", "-q", "subvolume", "create", f"{MNT}/img")
    fill(f"{MNT}/img")
    for i in range(CLONES):
        run("btrfs", "-q", "subvolume", "snapshot", f"{MNT}/img", f"{MNT}/c{i}")
    measure("btrfs", [f"{MNT}/c{i}" for i in range(CLONES)])
    umount()

    mount_ext4()
    fill(f"{MNT}/lower")
    roots = []
    for i in range(CLONES):
        for d in ("upper", "work", "merged"):
            os.makedirs(f"{MNT}/{d}{i}")
        run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={MNT}/lower,upperdir={MNT}/upper{i},workdir={MNT}/work{i}", f"{MNT}/merged{i}")
        roots.append(f"{MNT}/merged{i}")
    measure("overlay", roots)
    for r in roots:
        run("umount", r)
    # ext4 itself: warm reads of one file.
    read_file(f"{MNT}/lower/big")
    t = timed(lambda: [read_file(f"{MNT}/lower/big") for _ in range(10)])
    bench("warm-read", "ext4", SHARE_MB, 10 * SHARE_MB / (t / 1000), "MB/s")
    with open(f"{MNT}/plain", "wb") as f:
        for _ in range(SHARE_MB):
            f.write(chunk)
    read_file(f"{MNT}/plain")
    first_write("ext4", f"{MNT}/plain", "first-write-shared", SHARE_MB)
    umount()


def fio_randread(files):
    """Read IOPS of 4 KiB random reads, one fio job per file, all at once. Direct I/O: every read
    maps its block and goes to the device. Buffered, the page cache soon held most of a file and
    the runs measured cache hits (on the release kernel one job read faster than two)."""
    drop_caches()
    args = ["fio", "--minimal", "--group_reporting", "--ioengine=psync", "--rw=randread", "--bs=4k",
            "--direct=1", "--time_based", f"--runtime={PAR_SECONDS}", f"--size={PAR_MB}M"]
    for i, f in enumerate(files):
        args += [f"--name=j{i}", f"--filename={f}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    # Terse output: field 8 is the read IOPS (of the whole group).
    return float(out.strip().splitlines()[-1].split(";")[7])


def parallel():
    """Cold random reads in two layers: one reader against two at once. On lcfs the files are
    in frozen layers (their block maps are read without the volume lock) and, for comparison,
    in read-write layers (block maps under the lock)."""
    chunk = os.urandom(1 << 20)

    def fill(path):
        with open(path, "wb") as f:
            for _ in range(PAR_MB):
                f.write(chunk)

    def measure(fs, files, test="randread"):
        # Interleaved rounds, medians: one run under TCG varies by tens of percent.
        ones, twos = [], []
        for _ in range(PAR_ROUNDS):
            ones.append(fio_randread(files[:1]))
            twos.append(fio_randread(files))
        one, two = statistics.median(ones), statistics.median(twos)
        bench(f"{test}-iops", fs, 1, one, "IOPS")
        bench(f"{test}-iops", fs, 2, two, "IOPS")
        bench(f"{test}-scaling", fs, 2, two / one if one > 0 else 0, "x")

    fd = mount_lcfs()
    for name in ("a", "b", "wa", "wb"):
        lid = lcfs_create(fd, name)
        fill(f"{MNT}/{name}/f")
        if not name.startswith("w"):
            lcfs_call(fd, abi.IOC_FREEZE, abi.REF.pack(lid, 0, 0, 0))
    run("sync")
    measure("lcfs", [f"{MNT}/a/f", f"{MNT}/b/f"])
    measure("lcfs", [f"{MNT}/wa/f", f"{MNT}/wb/f"], "randread-rw-layers")
    os.close(fd)
    umount()

    run("mkfs.btrfs", "-q", "-f", DEV)
    run("mount", "-t", "btrfs", DEV, MNT)
    for name in ("a", "b"):
        run("btrfs", "-q", "subvolume", "create", f"{MNT}/{name}")
        fill(f"{MNT}/{name}/f")
    run("sync")
    measure("btrfs", [f"{MNT}/a/f", f"{MNT}/b/f"])
    umount()

    mount_ext4()
    for name in ("a", "b"):
        os.makedirs(f"{MNT}/{name}")
        fill(f"{MNT}/{name}/f")
    run("sync")
    measure("ext4", [f"{MNT}/a/f", f"{MNT}/b/f"])
    umount()


# Creates `n` empty files in the directory `argv[1]`: one process per layer.
CREATE_CODE = """
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.mkdir(d)
for i in range(n):
    os.close(os.open(f"{d}/file-{i}", os.O_CREAT | os.O_WRONLY, 0o644))
"""


def create_in(dirs):
    """Seconds to create CREATES files in each of `dirs`, one process each, all at once."""
    t = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", CREATE_CODE, d, str(CREATES)]) for d in dirs]
    codes = [p.wait() for p in procs]
    assert codes == [0] * len(dirs), codes
    return time.monotonic() - t


def creates():
    """Two layers creating files at once against one alone: aggregate files per second."""

    def measure(fs, roots):
        ones, twos = [], []
        for r in range(PAR_ROUNDS):
            ones.append(CREATES / create_in([f"{roots[0]}/one{r}"]))
            twos.append(2 * CREATES / create_in([f"{root}/two{r}" for root in roots]))
        one, two = statistics.median(ones), statistics.median(twos)
        bench("creates-rate", fs, 1, one, "files/s")
        bench("creates-rate", fs, 2, two, "files/s")
        bench("creates-scaling", fs, 2, two / one if one > 0 else 0, "x")

    fd = mount_lcfs()
    for name in ("a", "b"):
        lcfs_create(fd, name)
    measure("lcfs", [f"{MNT}/a", f"{MNT}/b"])
    os.close(fd)
    umount()

    os.close(mount_btrfs())
    for name in ("a", "b"):
        run("btrfs", "-q", "subvolume", "create", f"{MNT}/{name}")
    measure("btrfs", [f"{MNT}/a", f"{MNT}/b"])
    umount()

    mount_ext4()
    for name in ("a", "b"):
        os.makedirs(f"{MNT}/{name}")
    measure("ext4", [f"{MNT}/a", f"{MNT}/b"])
    umount()


# Writes 4 KiB and fsyncs it, over and over, until killed: the busy neighbour.
FSYNC_CODE = """
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)
buf = os.urandom(4096)
i = 0
while True:
    os.pwrite(fd, buf, (i % 256) * 4096)
    os.fsync(fd)
    i += 1
"""


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def latency():
    """p99 of cold stats and reads, and of small file creates, in layer B, with layer A idle and
    with A in an fsync loop.
    The guest clock of a TCG run moves in coarse steps (see mean_ms): single calls below a few
    milliseconds read as 0 or one step, so the p99 shows stalls, not fast-path costs."""

    def files(root):
        for d in range(LAT_FILES // 100):
            for i in range(100):
                yield f"{root}/d{d}/f{i}"

    def fill(root):
        data = os.urandom(4096)
        for d in range(LAT_FILES // 100):
            os.makedirs(f"{root}/d{d}")
        for p in files(root):
            with open(p, "wb") as f:
                f.write(data)

    def create(path):
        with open(path, "wb") as f:
            f.write(b"x" * 100)

    def probe(root, tag):
        drop_caches()
        new = f"{root}/new-{tag}"
        os.makedirs(new)
        stats, reads, creates = [], [], []
        for n, p in enumerate(files(root)):
            stats.append(timed(lambda: os.stat(p)))
            reads.append(timed(lambda: open(p, "rb").read(4096)))
            creates.append(timed(lambda: create(f"{new}/{n}")))
        return stats, reads, creates

    def measure(fs, b_root, a_file):
        idle = probe(b_root, "idle")
        busy_proc = subprocess.Popen([sys.executable, "-c", FSYNC_CODE, a_file])
        time.sleep(1)
        try:
            busy = probe(b_root, "busy")
        finally:
            busy_proc.kill()
            busy_proc.wait()
        for name, i, b in (
            ("stat", idle[0], busy[0]),
            ("read", idle[1], busy[1]),
            ("create", idle[2], busy[2]),
        ):
            p_idle, p_busy = percentile(i, 99), percentile(b, 99)
            bench(f"p99-{name}-idle", fs, LAT_FILES, p_idle, "ms")
            bench(f"p99-{name}-fsync", fs, LAT_FILES, p_busy, "ms")
            # One clock step stands in for a p99 that read as 0.
            bench(f"p99-{name}-ratio", fs, LAT_FILES, p_busy / max(p_idle, 4.0), "x")
            # Calls of two clock steps or more: the stalls a p99 of one step hides.
            bench(f"stalls-{name}-idle", fs, LAT_FILES, sum(v >= 7.5 for v in i), "calls")
            bench(f"stalls-{name}-fsync", fs, LAT_FILES, sum(v >= 7.5 for v in b), "calls")

    fd = mount_lcfs()
    img = lcfs_create(fd, "img")
    fill(f"{MNT}/img")
    lcfs_call(fd, abi.IOC_FREEZE, abi.REF.pack(img, 0, 0, 0))
    lcfs_clone(fd, img, "b")
    lcfs_create(fd, "a")
    run("sync")
    measure("lcfs", f"{MNT}/b", f"{MNT}/a/log")
    os.close(fd)
    umount()

    dfd = mount_btrfs()
    btrfs_subvol(dfd, "img")
    fill(f"{MNT}/img")
    btrfs_snapshot(dfd, f"{MNT}/img", "b")
    btrfs_subvol(dfd, "a")
    run("sync")
    measure("btrfs", f"{MNT}/b", f"{MNT}/a/log")
    os.close(dfd)
    umount()

    mount_ext4()
    fill(f"{MNT}/b")
    os.makedirs(f"{MNT}/a")
    run("sync")
    measure("ext4", f"{MNT}/b", f"{MNT}/a/log")
    umount()


if __name__ == "__main__":
    if "layers" in PARTS:
        for n in SIZES:
            per_size(n)
    if "cow" in PARTS:
        copy_on_write()
    if "depth" in PARTS:
        depth()
    if "pagecache" in PARTS:
        pagecache()
    if "parallel" in PARTS:
        parallel()
    if "creates" in PARTS:
        creates()
    if "latency" in PARTS:
        latency()
