# SPDX-License-Identifier: GPL-2.0
# Page-cache sharing between layers, from the Debian root's python3 (tests/guest/share.sh). The
# layers named on the command line are clones of one frozen layer `base` of the mount at MOUNT;
# each file F below is base's file F as every clone sees it before it changes it.
#
#   share.py isolation MOUNT A B     a change in clone A (writes, truncate) is A's alone: B's open
#                                    files and mappings, base, and A's identity are unchanged;
#                                    A's files opened before see the change
#   share.py identity MOUNT A B      inotify marks and leases stay on each clone's own inode
#                                    while A and B share one page cache
#   share.py same-layer MOUNT A      a mapping made before A's own change keeps the shared pages
#                                    (the documented difference from ext4); later ones see it
#   share.py fadvise MOUNT A B       POSIX_FADV_DONTNEED in B leaves the shared cache to A
#   share.py mapsum PATH...          prints the MD5 of each file read through a private mapping
#   share.py sendfile PATH...        copies each file to /dev/null with sendfile(2) (splice)
#   share.py growth CMD ARGS...      runs CMD (mapsum, sendfile) and prints how much Cached grew
#                                    (KiB) meanwhile, the interpreter's own files already read
#   share.py watch FILE SUM STOP     reads and maps FILE until STOP exists; each must hash to SUM
#
# Prints "ok NAME" or "not ok NAME: ..." per check and exits 1 if any failed.
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import signal
import struct
import sys
import time

failed = 0


def check(name, cond, detail=""):
    global failed
    if cond:
        print("ok", name)
    else:
        failed += 1
        print("not ok", name + (": " + detail if detail else ""))


def cached_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Cached:"):
                return int(line.split()[1])
    raise RuntimeError("no Cached in /proc/meminfo")


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def mapped(path):
    """A private read-only mapping of PATH, with the file object that keeps it open."""
    f = open(path, "rb")
    return f, mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)


def isolation(mount, a, b):
    fa, fb = f"{mount}/{a}/f", f"{mount}/{b}/f"
    orig = read_all(f"{mount}/base/f")
    size = len(orig)
    check("clones start equal", read_all(fa) == orig and read_all(fb) == orig)
    st_a = os.stat(fa)
    # Opened and mapped before A changes: B's must never see A's change, A's read fd must.
    a_ro = open(fa, "rb")
    b_ro = open(fb, "rb")
    b_file, b_map = mapped(fb)
    b_shared = mmap.mmap(b_ro.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    check("B's mapping reads the contents", b_map[:] == orig and b_shared[:] == orig)
    # A lock in A does not block the same lock in B: separate inodes.
    fcntl.flock(a_ro, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        fcntl.flock(b_ro, fcntl.LOCK_EX | fcntl.LOCK_NB)
        check("flock in A leaves B free", True)
        fcntl.flock(b_ro, fcntl.LOCK_UN)
    except BlockingIOError:
        check("flock in A leaves B free", False, "B's flock would block")
    fcntl.flock(a_ro, fcntl.LOCK_UN)
    # /proc/self/maps names the file the user mapped, not the hidden content file.
    with open("/proc/self/maps") as m:
        maps = m.read()
    check("maps shows the layer path", fb in maps, maps[-400:])
    new = bytearray(orig)
    with open(fa, "r+b") as w:
        w.seek(4096)
        w.write(b"A" * 100)
        w.seek(1 << 20)
        w.write(b"B" * 100)
        w.flush()
        os.fsync(w.fileno())
        new[4096:4196] = b"A" * 100
        new[1 << 20:(1 << 20) + 100] = b"B" * 100
        cut = size - 12345
        w.truncate(cut)
        del new[cut:]
    new = bytes(new)
    check("A reads its change", read_all(fa) == new)
    a_ro.seek(0)
    check("A's file opened before reads the change", a_ro.read() == new)
    check("A's hard link reads the change", read_all(f"{mount}/{a}/hl") == new)
    st_a2 = os.stat(fa)
    check("A's identity stays", (st_a.st_ino, st_a.st_dev) == (st_a2.st_ino, st_a2.st_dev),
          f"{(st_a.st_ino, st_a.st_dev)} then {(st_a2.st_ino, st_a2.st_dev)}")
    b_ro.seek(0)
    check("B's open file is unchanged", b_ro.read() == orig)
    check("B's private mapping is unchanged", b_map[:] == orig)
    check("B's shared mapping is unchanged", b_shared[:] == orig)
    check("B reopened is unchanged", read_all(fb) == orig)
    check("base is unchanged", read_all(f"{mount}/base/f") == orig)
    # Cold: from disk, not from any cache.
    b_map.close()
    b_shared.close()
    b_file.close()
    b_ro.close()
    a_ro.close()
    with open("/proc/sys/vm/drop_caches", "w") as d:
        d.write("3")
    check("A after dropping caches", read_all(fa) == new)
    check("B after dropping caches", read_all(fb) == orig)


IN_ACCESS, IN_OPEN, IN_NONBLOCK = 0x1, 0x20, 0o4000


def inotify_events(fd):
    """The event masks waiting on inotify descriptor FD (none: an empty list)."""
    try:
        buf = os.read(fd, 4096)
    except BlockingIOError:
        return []
    masks = []
    while buf:
        _, mask, _, length = struct.unpack_from("iIII", buf)
        masks.append(mask)
        buf = buf[16 + length:]
    return masks


def identity(mount, a, b):
    fa, fb = f"{mount}/{a}/f", f"{mount}/{b}/f"
    orig = read_all(f"{mount}/base/f")
    # inotify: a mark on A's file sees A's opens and reads, not B's, though both read one cache.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    ino = libc.inotify_init1(IN_NONBLOCK)
    check("inotify_init1", ino >= 0, os.strerror(ctypes.get_errno()))
    wd = libc.inotify_add_watch(ino, fa.encode(), IN_ACCESS | IN_OPEN)
    check("inotify_add_watch on A's file", wd >= 0, os.strerror(ctypes.get_errno()))
    check("B reads the contents", read_all(fb) == orig)
    check("B's read leaves A's mark quiet", inotify_events(ino) == [])
    check("A reads the contents", read_all(fa) == orig)
    seen = 0
    for m in inotify_events(ino):
        seen |= m
    check("A's read reaches A's mark", seen & (IN_ACCESS | IN_OPEN) == IN_ACCESS | IN_OPEN,
          f"events {seen:#x}")
    os.close(ino)
    # Leases: a read lease on A's file is broken by a write open of A, not by one of B.
    signal.signal(signal.SIGIO, signal.SIG_IGN)
    held = open(fa, "rb")
    fcntl.fcntl(held, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    check("A's read lease is held", fcntl.fcntl(held, fcntl.F_GETLEASE) == fcntl.F_RDLCK)
    try:
        os.close(os.open(fb, os.O_RDWR | os.O_NONBLOCK))
        check("a write open of B leaves A's lease", True)
    except OSError as e:
        check("a write open of B leaves A's lease", False, e.strerror)
    try:
        os.close(os.open(fa, os.O_RDWR | os.O_NONBLOCK))
        check("a write open of A meets A's lease", False, "the open went through")
    except OSError as e:
        check("a write open of A meets A's lease", e.errno == errno.EWOULDBLOCK, e.strerror)
    fcntl.fcntl(held, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    held.close()
    check("A still reads the contents", read_all(fa) == orig)


def same_layer(mount, a):
    fa = f"{mount}/{a}/f"
    orig = read_all(fa)
    before_file, before = mapped(fa)
    ro = open(fa, "rb")
    with open(fa, "r+b") as w:
        w.write(b"X" * 10)
    new = b"X" * 10 + orig[10:]
    check("a mapping made before A's change keeps the shared pages", before[:] == orig)
    ro.seek(0)
    check("a file opened before A's change reads it", ro.read() == new)
    after_file, after = mapped(fa)
    check("a mapping made after A's change sees it", after[:] == new)
    for x in (before, before_file, after, after_file, ro):
        x.close()


def fadvise(mount, a, b):
    fa, fb = f"{mount}/{a}/f", f"{mount}/{b}/f"
    orig = read_all(f"{mount}/base/f")
    read_all(fa)
    read_all(fb)
    c0 = cached_kib()
    with open(fb, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    c1 = cached_kib()
    # Dropping the shared pages would free about the file's size.
    check("DONTNEED in B keeps the shared cache", c0 - c1 < len(orig) // 1024 // 2,
          f"Cached {c0} KiB before, {c1} KiB after")
    check("A reads the contents", read_all(fa) == orig)
    check("B reads the contents", read_all(fb) == orig)
    with open(fb, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
    check("WILLNEED in B", read_all(fb) == orig)


def mapsum(paths):
    for p in paths:
        f, m = mapped(p)
        print(hashlib.md5(m[:]).hexdigest(), p)
        m.close()
        f.close()


def sendfile(paths):
    with open("/dev/null", "wb") as out:
        for p in paths:
            with open(p, "rb") as f:
                n, total = 1, 0
                while n:
                    n = os.sendfile(out.fileno(), f.fileno(), None, 1 << 20)
                    total += n
            check(f"sendfile of {p}", total == os.stat(p).st_size)


def watch(path, want, stop):
    rounds = 0
    while not os.path.exists(stop):
        data = read_all(path)
        f, m = mapped(path)
        got = (hashlib.md5(data).hexdigest(), hashlib.md5(m[:]).hexdigest())
        m.close()
        f.close()
        if got != (want, want):
            check(f"round {rounds} reads the contents", False, f"{got}, want {want}")
            return
        rounds += 1
        time.sleep(0.05)
    check(f"{rounds} rounds read the contents", rounds > 0)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "isolation":
        isolation(*args)
    elif cmd == "identity":
        identity(*args)
    elif cmd == "same-layer":
        same_layer(*args)
    elif cmd == "fadvise":
        fadvise(*args)
    elif cmd == "mapsum":
        mapsum(args)
    elif cmd == "sendfile":
        sendfile(args)
    elif cmd == "growth":
        c0 = cached_kib()
        with open(os.devnull, "w") as null:
            out, sys.stdout = sys.stdout, null
            {"mapsum": mapsum, "sendfile": sendfile}[args[0]](args[1:])
            sys.stdout = out
        print(cached_kib() - c0)
    elif cmd == "watch":
        watch(*args)
    else:
        sys.exit(f"unknown command {cmd}")
    sys.exit(1 if failed else 0)


main()
